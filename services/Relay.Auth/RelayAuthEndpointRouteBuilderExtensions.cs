using Microsoft.AspNetCore.Routing;
using Relay.Auth.Http;

namespace Relay.Auth;

/// <summary>Maps Relay's authentication endpoints.</summary>
public static class RelayAuthEndpointRouteBuilderExtensions
{
    /// <summary>Maps <c>POST /v1/tokens</c> (key auth only) and <c>GET /.well-known/jwks.json</c>. Needs <c>AddRelayAuth()</c>.</summary>
    public static IEndpointRouteBuilder MapRelayAuth(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        TokensApi.Map(endpoints);
        return endpoints;
    }
}

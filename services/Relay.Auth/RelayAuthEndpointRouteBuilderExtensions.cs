using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Relay.Auth.Http;
using Relay.Auth.Verification;
using Relay.ServiceDefaults;

namespace Relay.Auth;

/// <summary>Maps Relay's authentication endpoints.</summary>
public static class RelayAuthEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Maps <c>POST /v1/tokens</c> (key auth only) and <c>GET /.well-known/jwks.json</c>. Needs <c>AddRelayAuth()</c>. A process
    /// that follows the auth service's keys (<c>Relay:Auth:KeySource=redis</c>) maps neither: its tokens would be signed with
    /// a key no other node trusts, so its ingress passes these paths to the auth service (<c>Relay:Ingress:AuthUrl</c>).
    /// With an internal listener (<c>Relay:InternalTls:Port</c>) both are served only there, to callers whose client
    /// certificate the internal CA issued; elsewhere they answer 403 with 40300.
    /// </summary>
    public static IEndpointRouteBuilder MapRelayAuth(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        if (endpoints.ServiceProvider.GetRequiredService<IOptions<RelayAuthOptions>>().Value.KeySource != "redis")
        {
            // With an internal listener (Relay:InternalTls:Port), served there only, to callers with the CA's certificate.
            TokensApi.Map(endpoints.MapGroup(string.Empty).RequireRelayInternalCaller());
        }

        return endpoints;
    }
}

using Grpc.Core;
using Microsoft.AspNetCore.Http;
using Relay.Auth.Verification;

namespace Relay.Ingress.Grpc;

/// <summary>
/// A call's credentials, checked as the WebSocket's are: metadata <c>authorization</c> (<c>Bearer</c> a token, <c>Basic</c>
/// a key), or <c>relay-key: APPID.KEYID:SECRET</c> or <c>relay-token</c> (the WebSocket's <c>?key=</c> and
/// <c>?token=</c>); with a key, <c>relay-client-id</c> names the client (<c>?clientId=</c>).
/// </summary>
internal static class GrpcCredentials
{
    public const string KeyHeader = "relay-key";
    public const string TokenHeader = "relay-token";
    public const string ClientIdHeader = "relay-client-id";

    public static AuthResult Authenticate(IRelayAuthenticator authenticator, ServerCallContext call)
    {
        var headers = call.RequestHeaders;
        var context = new DefaultHttpContext();
        if (headers.GetValue("authorization") is { } authorization)
        {
            context.Request.Headers.Authorization = authorization;
        }

        var query = new List<KeyValuePair<string, string?>>(3);
        Add(query, headers, KeyHeader, "key");
        Add(query, headers, TokenHeader, "token");
        Add(query, headers, ClientIdHeader, "clientId");
        if (query.Count > 0)
        {
            context.Request.QueryString = QueryString.Create(query);
        }

        return authenticator.Authenticate(context);
    }

    private static void Add(List<KeyValuePair<string, string?>> query, Metadata headers, string header, string parameter)
    {
        foreach (var entry in headers)
        {
            if (!entry.IsBinary && string.Equals(entry.Key, header, StringComparison.OrdinalIgnoreCase))
            {
                query.Add(new(parameter, entry.Value));
            }
        }
    }
}

using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Relay.Auth.Verification.Keys;
using Relay.Auth.Verification.Tokens;
using Relay.Core.Auth;
using Relay.Core.Protocol;

namespace Relay.Auth.Verification;

/// <summary>Checks a request's credentials against the key store and token validator: no I/O, nothing per call but parsing.</summary>
internal sealed partial class RelayAuthenticator(KeyStore keys, TokenValidator tokens, TimeProvider time, ILogger<RelayAuthenticator> logger) : IRelayAuthenticator
{
    public const string NoCredentialsMessage = "no credentials: send a key (Basic auth or ?key=) or a token (Bearer or ?token=)";

    /// <summary>What a connection whose key was removed, or whose secret changed, is told (40102).</summary>
    public const string KeyRevokedMessage = "key no longer valid: the key behind these credentials was removed or its secret changed; connect again with valid credentials";

    private readonly LogRateLimit _failureLogs = new(time);

    public long KeysVersion => keys.Version;

    public AuthResult Authenticate(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var result = AuthenticateRequest(context.Request);
        if (!result.Succeeded)
        {
            LogRefused(result);
        }

        return result;
    }

    public AuthResult AuthenticateToken(string token)
    {
        var result = tokens.Validate(token);
        if (!result.Succeeded)
        {
            LogRefused(result);
        }

        return result;
    }

    public AuthResult Recheck(RelayPrincipal principal)
    {
        ArgumentNullException.ThrowIfNull(principal);
        if (principal.Grant is not { } grant || (keys.TryGet(grant.Key.Name, out var current) && ReferenceEquals(current, grant.Key)))
        {
            return AuthResult.Success(principal);
        }

        if (current is null || (grant.ProvenBySecret && !current.SameSecret(grant.Key)))
        {
            return AuthResult.Fail(ErrorCodes.InvalidCredentials, KeyRevokedMessage);
        }

        // The key's capabilities changed (either way): a token keeps what it asked for, clipped to the key's new ones.
        var capabilities = grant.Requested is null ? current.Capabilities : Capabilities.Intersect(grant.Requested, current.Capabilities);
        return AuthResult.Success(principal with { Capabilities = capabilities, Grant = grant with { Key = current } });
    }

    private void LogRefused(AuthResult result)
    {
        if (logger.IsEnabled(LogLevel.Debug) && _failureLogs.TryTake())
        {
            LogFailure(logger, result.Error!.Code, result.Detail ?? result.Error.Message);
        }
    }

    private AuthResult AuthenticateRequest(HttpRequest request)
    {
        var authorization = request.Headers.Authorization;
        if (authorization.Count > 0 && !string.IsNullOrWhiteSpace(authorization[0]))
        {
            var header = authorization[0].AsSpan();
            if (BasicCredentials.TryGetScheme(header, "Basic", out var basic))
            {
                var error = BasicCredentials.Authenticate(basic, keys, out var key, out var detail);
                return error is null ? KeyPrincipal(key!, request) : new AuthResult(null, error) { Detail = detail };
            }

            if (BasicCredentials.TryGetScheme(header, "Bearer", out var bearer))
            {
                return tokens.Validate(bearer.ToString());
            }

            return AuthResult.Fail(ErrorCodes.InvalidCredentials, "unsupported Authorization scheme: use Basic (a key) or Bearer (a token)");
        }

        var query = request.Query;
        if (query.TryGetValue("key", out var keyValues))
        {
            var error = keys.Authenticate(keyValues[0].AsSpan(), out var key, out var detail);
            return error is null ? KeyPrincipal(key!, request) : new AuthResult(null, error) { Detail = detail };
        }

        if (query.TryGetValue("token", out var tokenValues))
        {
            return tokens.Validate(tokenValues[0] ?? string.Empty);
        }

        return AuthResult.Fail(ErrorCodes.NoCredentials, NoCredentialsMessage);
    }

    /// <summary>With a key, <c>?clientId=</c> names the client.</summary>
    private static AuthResult KeyPrincipal(ApiKey key, HttpRequest request)
    {
        if (!request.Query.TryGetValue("clientId", out var clientIds))
        {
            return AuthResult.Success(key.Principal);
        }

        var clientId = clientIds[0] ?? string.Empty;
        if (clientIds.Count > 1)
        {
            return AuthResult.Fail(ErrorCodes.BadRequest, "give clientId once");
        }

        return ClientIds.Validate(clientId) is { } invalid
            ? new AuthResult(null, invalid)
            : AuthResult.Success(key.Principal with { ClientId = clientId });
    }
}

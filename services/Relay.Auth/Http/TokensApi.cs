using System.Buffers;
using System.IO.Pipelines;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;
using Relay.Auth.Keys;
using Relay.Auth.Tokens;
using Relay.Auth.Verification;
using Relay.Auth.Verification.Keys;
using Relay.Auth.Verification.Tokens;
using Relay.Core.Auth;
using Relay.Core.Protocol;
using Relay.ServiceDefaults;

namespace Relay.Auth.Http;

/// <summary><c>POST /v1/tokens</c> (key auth only) and <c>GET /.well-known/jwks.json</c>.</summary>
internal static partial class TokensApi
{
    /// <summary>A token request is three small fields; 64 KiB fits any sane capability map.</summary>
    public const int MaxBodyBytes = 64 * 1024;

    private const string LoggerCategory = "Relay.Auth.Http.TokensApi";
    private const string KeyRequired = "POST /v1/tokens needs a key: send Authorization: Basic base64(APPID.KEYID:SECRET)";

    private static readonly JsonDocumentOptions JsonOptions = new() { AllowDuplicateProperties = false, MaxDepth = 16 };

    public static void Map(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGroup("/v1").MapPost("/tokens", IssueAsync);
        endpoints.MapGet("/.well-known/jwks.json", static (HttpContext context, VerificationKey signingKey) =>
        {
            // Verifiers may cache the key set for a while; a new key only arrives with a restart.
            context.Response.Headers.CacheControl = "public, max-age=300";
            return Results.Bytes(signingKey.Jwks, "application/json");
        });
    }

    private static async Task<IResult> IssueAsync(
        HttpContext context, KeyStore keys, TokenIssuer tokens, IOptions<RelayTokenIssuingOptions> options, ILoggerFactory loggers)
    {
        var logger = loggers.CreateLogger(LoggerCategory);
        var key = AuthenticateKey(context.Request, keys, out var authError);
        if (key is null)
        {
            return Refuse(logger, authError!);
        }

        if (!tokens.CanIssue)
        {
            return Refuse(logger, new RelayError(ErrorCodes.Unavailable, "this node holds only the public signing key and cannot issue tokens; ask the Relay.Auth service"));
        }

        // A body declared too large is refused unread (reading it past Kestrel's 30 MB limit threw out of this endpoint,
        // an error in the log per request), and so is one Kestrel gives up on; the connection closes after the answer.
        RelayError? bodyError;
        TokenRequest request = default;
        try
        {
            (request, bodyError) = context.Request.ContentLength > MaxBodyBytes
                ? (default, RelayError.BadRequest($"the body is larger than {MaxBodyBytes} bytes"))
                : await ReadRequestAsync(context.Request.BodyReader, context.RequestAborted).ConfigureAwait(false);
        }
        catch (BadHttpRequestException ex)
        {
            bodyError = RelayError.BadRequest("unreadable request body: " + ex.Message);
        }

        if (bodyError is not null)
        {
            context.Response.Headers.Connection = "close";
            return Refuse(logger, bodyError);
        }

        if (request.ClientId is not null && ClientIds.Validate(request.ClientId) is { } invalidClient)
        {
            return Refuse(logger, invalidClient);
        }

        var capabilities = request.Capabilities ?? key.Capabilities;
        if (!capabilities.IsSubsetOf(key.Capabilities))
        {
            return Refuse(logger, new RelayError(ErrorCodes.Forbidden, DescribeExcess(capabilities, key)));
        }

        var max = options.Value.MaxTokenTtlSeconds;
        var ttl = request.TtlSeconds ?? options.Value.DefaultTokenTtlSeconds;
        if (ttl < 1 || ttl > max)
        {
            return Refuse(logger, RelayError.BadRequest($"ttlSeconds must be an integer from 1 to {max}"));
        }

        var (token, expiresAt) = tokens.Issue(key, request.ClientId, capabilities, (int)ttl);
        LogIssued(logger, key.Name, request.ClientId, expiresAt);
        context.Response.Headers.CacheControl = "no-store";
        return Results.Json(new TokenResponse(token, expiresAt.ToUnixTimeMilliseconds()), TokensJsonContext.Default.TokenResponse);
    }

    /// <summary>Only Basic: a key in a URL ends up in logs, and a token must not mint tokens.</summary>
    private static ApiKey? AuthenticateKey(HttpRequest request, KeyStore keys, out RelayError? error)
    {
        var authorization = request.Headers.Authorization;
        if (authorization.Count == 0 || string.IsNullOrWhiteSpace(authorization[0]))
        {
            error = new RelayError(ErrorCodes.NoCredentials, request.Query.ContainsKey("key")
                ? KeyRequired + " (?key= is not accepted here: keys in URLs end up in logs)"
                : KeyRequired);
            return null;
        }

        var header = authorization[0].AsSpan();
        if (!BasicCredentials.TryGetScheme(header, "Basic", out var basic))
        {
            error = new RelayError(ErrorCodes.InvalidCredentials, BasicCredentials.TryGetScheme(header, "Bearer", out _)
                ? "a token cannot request tokens: " + KeyRequired
                : "unsupported Authorization scheme: " + KeyRequired);
            return null;
        }

        // Which it was (unknown key or wrong secret) is dropped: the reply may not tell, and this endpoint logs only its replies.
        error = BasicCredentials.Authenticate(basic, keys, out var key, out _);
        return key;
    }

    private static async Task<(TokenRequest Request, RelayError? Error)> ReadRequestAsync(PipeReader reader, CancellationToken cancellationToken)
    {
        while (true)
        {
            var read = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = read.Buffer;
            if (buffer.Length > MaxBodyBytes)
            {
                reader.AdvanceTo(buffer.End);
                return (default, RelayError.BadRequest($"the body is larger than {MaxBodyBytes} bytes"));
            }

            if (!read.IsCompleted)
            {
                reader.AdvanceTo(buffer.Start, buffer.End);
                continue;
            }

            try
            {
                return TokenRequest.TryParse(buffer, out var request, out var error) ? (request, null) : (default, error);
            }
            finally
            {
                reader.AdvanceTo(buffer.End);
            }
        }
    }

    /// <summary>Names the first glob and the operations the key does not grant on every channel it matches.</summary>
    private static string DescribeExcess(Capabilities requested, ApiKey key)
    {
        foreach (var (glob, operations) in requested.Entries)
        {
            var missing = new List<string>(4);
            foreach (var operation in (ReadOnlySpan<Operations>)[Operations.Subscribe, Operations.Publish, Operations.Presence, Operations.History])
            {
                if ((operations & operation) != 0 && !Capabilities.From([new(glob, operation)]).IsSubsetOf(key.Capabilities))
                {
                    missing.Add(operation.ToString().ToLowerInvariant());
                }
            }

            if (missing.Count > 0)
            {
                return $"the requested capabilities exceed the key's: '{glob}' asks for {string.Join(", ", missing)}, which key '{key.Name}' does not grant on every channel '{glob}' matches";
            }
        }

        return $"the requested capabilities exceed those of key '{key.Name}'";
    }

    private static IResult Refuse(ILogger logger, RelayError error)
    {
        LogRefused(logger, error.Code, error.Message);
        return RelayResults.Error(error);
    }
}

using System.Buffers;
using System.Buffers.Text;
using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Relay.Auth.Verification.Keys;
using Relay.Core.Auth;
using Relay.Core.Protocol;

namespace Relay.Auth.Verification.Tokens;

/// <summary>
/// Checks both kinds of token (Relay ES256, customer HS256) against the key store, the public
/// <see cref="VerificationKey"/> and the clock of <see cref="TimeProvider"/>. It holds nothing that signs: issuing is
/// <c>TokenIssuer</c>'s.
/// </summary>
/// <remarks>
/// It parses the compact JWT once and verifies the signature directly: <c>JsonWebTokenHandler</c> refuses HMAC keys
/// under 256 bits (IDX10720) while the protocol allows 16-character secrets, and reading claims from one JSON document
/// avoids the handler's claim mapping and default lifetime rules.
/// </remarks>
internal sealed class TokenValidator
{
    /// <summary>The <c>iss</c> of Relay's tokens.</summary>
    public const string Issuer = "relay";

    /// <summary>Tokens ride in headers and URLs, which servers cap at a few KiB; 16 KiB leaves room for big capability maps.</summary>
    public const int MaxTokenLength = 16 * 1024;

    private const int StackLimit = 1024;
    private const string HmacAlgorithm = "HS256";
    private const string CapExample = "{\"chat:*\":[\"subscribe\"]}";

    private static readonly JsonDocumentOptions JsonOptions = new() { AllowDuplicateProperties = false, MaxDepth = 16 };

    private readonly KeyStore _keys;
    private readonly VerificationKey _verificationKey;
    private readonly TimeProvider _time;
    private readonly long _skewMilliseconds;

    public TokenValidator(KeyStore keys, VerificationKey verificationKey, IOptions<RelayAuthOptions> options, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        _keys = keys;
        _verificationKey = verificationKey;
        _time = time;
        _skewMilliseconds = options.Value.ClockSkewSeconds * 1000L;
    }

    /// <summary>Checks a token: signature, <c>exp</c>/<c>nbf</c>, <c>app</c>, <c>cap</c>; the principal's capabilities are clipped to its key's.</summary>
    public AuthResult Validate(string token)
    {
        if (string.IsNullOrEmpty(token))
        {
            return Invalid("empty token: send a JWT");
        }

        if (token.Length > MaxTokenLength)
        {
            return Invalid($"token longer than {MaxTokenLength} characters");
        }

        var span = token.AsSpan();
        var headerEnd = span.IndexOf('.');
        var payloadEnd = span.LastIndexOf('.');
        if (headerEnd <= 0 || payloadEnd == headerEnd || span[(headerEnd + 1)..payloadEnd].Contains('.'))
        {
            return Invalid("malformed token: a JWT has three base64url parts, header.payload.signature");
        }

        if (!TryReadHeader(span[..headerEnd], out var alg, out var kid, out var headerError))
        {
            return Invalid(headerError);
        }

        var signature = Decode(span[(payloadEnd + 1)..]);
        var payloadBytes = Decode(span[(headerEnd + 1)..payloadEnd]);
        if (signature is null || payloadBytes is null)
        {
            return Invalid("malformed token: its payload or signature is not base64url");
        }

        ApiKey? key = null;
        var provenBySecret = alg == HmacAlgorithm;
        switch (alg)
        {
            case HmacAlgorithm:
                if (kid is null)
                {
                    return Invalid("an HS256 token needs header kid = APPID.KEYID, the key whose secret signed it");
                }

                if (!_keys.TryGet(kid, out key))
                {
                    if (!KeyStore.IsWellFormedName(kid))
                    {
                        return Invalid("the token's kid must be APPID.KEYID");
                    }

                    // The same answer and the same work as a wrong signature: which keys exist is not for the caller to learn.
                    _ = VerifySignature(span[..payloadEnd], signature, ApiKey.Nobody);
                    return Refused($"unknown key '{kid}' in the token's kid");
                }

                if (!VerifySignature(span[..payloadEnd], signature, key))
                {
                    return Refused($"invalid HS256 signature for key '{kid}'");
                }

                break;
            case VerificationKey.Algorithm:
                ECDsa? peer = null;
                if (!string.Equals(kid, _verificationKey.KeyId, StringComparison.Ordinal) && (kid is null || !_keys.TryGetPeerSigningKey(kid, out peer)))
                {
                    return Invalid("the token was signed by a Relay key this node does not know (see /.well-known/jwks.json); request a new token");
                }

                if (!VerifySignature(span[..payloadEnd], signature, key: null, peer))
                {
                    return Refused("invalid ES256 signature");
                }

                break;
            default:
                return Invalid("unsupported token alg: use HS256 (signed with a key's secret, kid APPID.KEYID) or ES256 (issued by POST /v1/tokens)");
        }

        JsonDocument payload;
        try
        {
            payload = JsonDocument.Parse(payloadBytes, JsonOptions);
        }
        catch (JsonException)
        {
            return Invalid("malformed token: its payload is not a JSON object");
        }

        using (payload)
        {
            return payload.RootElement.ValueKind == JsonValueKind.Object
                ? ValidateClaims(payload.RootElement, key, provenBySecret)
                : Invalid("malformed token: its payload is not a JSON object");
        }
    }

    private AuthResult ValidateClaims(JsonElement claims, ApiKey? key, bool provenBySecret)
    {
        if (key is null)
        {
            // Relay's own token: the key that asked for it must still exist, or revoking a key would not revoke its tokens.
            if (!TryGetString(claims, "iss", out var issuer) || issuer != Issuer)
            {
                return Invalid($"a token signed by Relay must have iss '{Issuer}'");
            }

            if (!TryGetString(claims, "key", out var keyName))
            {
                return Invalid("a token signed by Relay must name its key in the key claim");
            }

            if (!_keys.TryGet(keyName, out key))
            {
                return Invalid(KeyStore.IsWellFormedName(keyName) ? $"the key that issued this token ('{keyName}') no longer exists" : "the token's key claim must be APPID.KEYID");
            }
        }

        if (!NumericDate.TryRead(claims, "exp", out var expires, out var hasExpiry))
        {
            return Invalid(hasExpiry ? "the token's exp must be a NumericDate (seconds since 1970)" : "the token has no exp claim; tokens must expire");
        }

        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        if (now > (expires * 1000) + _skewMilliseconds)
        {
            return AuthResult.Fail(ErrorCodes.TokenExpired, "token expired");
        }

        if (NumericDate.TryRead(claims, "nbf", out var notBefore, out var hasNotBefore))
        {
            if ((notBefore * 1000) - _skewMilliseconds > now)
            {
                return Invalid("the token is not valid yet: its nbf is in the future");
            }
        }
        else if (hasNotBefore)
        {
            return Invalid("the token's nbf must be a NumericDate (seconds since 1970)");
        }

        if (!TryGetString(claims, "app", out var app))
        {
            return Invalid("the token has no app claim; set app to the APPID of its key");
        }

        if (app != key.AppId)
        {
            return Invalid($"the token's app claim does not match its key '{key.Name}'");
        }

        string? clientId = null;
        if (claims.TryGetProperty("sub", out var sub))
        {
            if (sub.ValueKind != JsonValueKind.String)
            {
                return Invalid("the token's sub (the client id) must be a string");
            }

            clientId = sub.GetString()!;
            if (ClientIds.Validate(clientId) is { } invalidClient)
            {
                return new AuthResult(null, invalidClient);
            }
        }

        if (!claims.TryGetProperty("cap", out var cap))
        {
            return Invalid($"the token has no cap claim; add cap, a JSON object of channel globs to operations, e.g. {CapExample}");
        }

        if (cap.ValueKind != JsonValueKind.Object)
        {
            return Invalid($"the token's cap must be a JSON object (not a string), e.g. {CapExample}");
        }

        if (!Capabilities.TryParse(cap, out var capabilities, out var capError))
        {
            return Invalid("the token's cap is invalid: " + capError);
        }

        return AuthResult.Success(new RelayPrincipal(
            key.AppId,
            key.KeyId,
            clientId,
            Capabilities.Intersect(capabilities, key.Capabilities),
            DateTimeOffset.FromUnixTimeSeconds(expires),
            RelayCredentialKind.Token)
        {
            Grant = new KeyGrant(key, capabilities, provenBySecret),
        });
    }

    private bool VerifySignature(ReadOnlySpan<char> signingInput, byte[] signature, ApiKey? key, ECDsa? peer = null)
    {
        byte[]? rented = null;
        var input = signingInput.Length <= StackLimit ? stackalloc byte[StackLimit] : (rented = ArrayPool<byte>.Shared.Rent(signingInput.Length));
        try
        {
            // The header and payload decoded as base64url, so every character is ASCII.
            var length = Encoding.ASCII.GetBytes(signingInput, input);
            input = input[..length];
            if (peer is not null)
            {
                return signature.Length == 64 && peer.VerifyData(input, signature, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
            }

            if (key is null)
            {
                return _verificationKey.Verify(input, signature);
            }

            Span<byte> mac = stackalloc byte[HMACSHA256.HashSizeInBytes];
            HMACSHA256.HashData(key.Secret, input, mac);
            return CryptographicOperations.FixedTimeEquals(mac, signature);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static bool TryReadHeader(ReadOnlySpan<char> encoded, out string? alg, out string? kid, out string error)
    {
        alg = null;
        kid = null;
        error = "malformed token: its header is not a base64url JSON object";
        var bytes = Decode(encoded);
        if (bytes is null)
        {
            return false;
        }

        try
        {
            using var header = JsonDocument.Parse(bytes, JsonOptions);
            var root = header.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return false;
            }

            if (!TryGetString(root, "alg", out alg))
            {
                error = "malformed token: its header has no alg";
                return false;
            }

            if (root.TryGetProperty("kid", out var kidValue))
            {
                if (kidValue.ValueKind != JsonValueKind.String)
                {
                    error = "malformed token: its header kid must be a string";
                    return false;
                }

                kid = kidValue.GetString();
            }

            // RFC 7515 4.1.11: a recipient that does not understand a critical extension must refuse the token.
            if (root.TryGetProperty("crit", out _))
            {
                error = "unsupported token: Relay understands no crit header extensions";
                return false;
            }

            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static bool TryGetString(JsonElement element, string name, [NotNullWhen(true)] out string? value)
    {
        value = element.TryGetProperty(name, out var property) && property.ValueKind == JsonValueKind.String ? property.GetString() : null;
        return value is not null;
    }

    private static byte[]? Decode(ReadOnlySpan<char> segment)
    {
        if (!Base64Url.IsValid(segment, out var length))
        {
            return null;
        }

        var bytes = new byte[length];
        return Base64Url.TryDecodeFromChars(segment, bytes, out var written) && written == length ? bytes : null;
    }

    private static AuthResult Invalid(string message) => AuthResult.Fail(ErrorCodes.InvalidCredentials, message);

    // The one answer for an unknown key and a bad signature; the detail goes to the server's log only.
    private static AuthResult Refused(string detail) => new(null, KeyStore.InvalidCredentials) { Detail = detail };
}

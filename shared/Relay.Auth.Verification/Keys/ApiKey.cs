using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using Relay.Core.Auth;

namespace Relay.Auth.Verification.Keys;

/// <summary>A configured key, parsed once: its name, secret (raw and hashed) and capabilities.</summary>
internal sealed class ApiKey
{
    private readonly byte[] _secretHash;

    public ApiKey(string appId, string keyId, string secret, Capabilities capabilities)
    {
        AppId = appId;
        KeyId = keyId;
        Name = appId + "." + keyId;
        Secret = Encoding.UTF8.GetBytes(secret);
        _secretHash = SHA256.HashData(Secret);
        Capabilities = capabilities;
        Principal = new RelayPrincipal(appId, keyId, null, capabilities, null, RelayCredentialKind.Key) { Grant = new KeyGrant(this, null, ProvenBySecret: true) };
    }

    /// <summary>A key that exists nowhere, so an unknown key name costs the same hashing as a wrong secret.</summary>
    public static ApiKey Nobody { get; } = new(string.Empty, string.Empty, Convert.ToBase64String(RandomNumberGenerator.GetBytes(24)), Capabilities.None);

    public string AppId { get; }

    public string KeyId { get; }

    /// <summary><c>APPID.KEYID</c>: the key's name in credentials, in a token's <c>key</c> claim and in an HS256 <c>kid</c>.</summary>
    public string Name { get; }

    /// <summary>The UTF-8 bytes of the secret: the HMAC key of the customer's HS256 tokens.</summary>
    public byte[] Secret { get; }

    public Capabilities Capabilities { get; }

    /// <summary>The principal of key auth without a client id, shared by every such request.</summary>
    public RelayPrincipal Principal { get; }

    /// <summary>Whether <paramref name="other"/> is the same key: same name, secret and capabilities.</summary>
    public bool SameAs(ApiKey other) =>
        Name == other.Name
        && CryptographicOperations.FixedTimeEquals(_secretHash, other._secretHash)
        && Capabilities.ToJson() == other.Capabilities.ToJson();

    /// <summary>Whether <paramref name="other"/> has the same secret.</summary>
    public bool SameSecret(ApiKey other) => CryptographicOperations.FixedTimeEquals(_secretHash, other._secretHash);

    /// <summary>
    /// Compares hashes in constant time: hashing first also hides the secret's length,
    /// which <see cref="CryptographicOperations.FixedTimeEquals"/> alone would reveal.
    /// </summary>
    public bool SecretMatches(ReadOnlySpan<char> secret)
    {
        const int StackLimit = 512;
        var maxBytes = Encoding.UTF8.GetMaxByteCount(secret.Length);
        byte[]? rented = null;
        var buffer = maxBytes <= StackLimit ? stackalloc byte[StackLimit] : (rented = ArrayPool<byte>.Shared.Rent(maxBytes));
        try
        {
            var length = Encoding.UTF8.GetBytes(secret, buffer);
            Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
            SHA256.HashData(buffer[..length], hash);
            return CryptographicOperations.FixedTimeEquals(hash, _secretHash);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(buffer);
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }
}

using System.Security.Cryptography;

namespace Relay.Auth.Verification.Keys;

/// <summary>The key store seen by name, signing with a secret without handing it out.</summary>
internal sealed class RelayKeys(KeyStore keys) : IRelayKeys
{
    public RelayPrincipal? Find(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return keys.TryGet(name, out var key) ? key.Principal : null;
    }

    public bool TryHmacSha256(string name, ReadOnlySpan<byte> data, Span<byte> hash)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!keys.TryGet(name, out var key))
        {
            return false;
        }

        HMACSHA256.HashData(key.Secret, data, hash);
        return true;
    }
}

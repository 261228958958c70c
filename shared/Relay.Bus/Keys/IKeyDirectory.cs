namespace Relay.Bus.Keys;

/// <summary>
/// Where the auth service shares its apps, keys and token-signing public key with the processes that verify credentials.
/// Registered by a bus that spans processes (the Redis bus); the in-memory bus registers none, since in one process every
/// service reads the auth service's own key store.
/// </summary>
public interface IKeyDirectory
{
    /// <summary>
    /// Replaces the shared key set with <paramref name="keys"/> (key name, <c>APPID.KEYID</c>, and its JSON) and adds the
    /// signer's public key (SubjectPublicKeyInfo, base64) under its key id, at once; returns the directory's version after
    /// it. Throws what the store throws when it cannot be reached.
    /// </summary>
    Task<long> PublishAsync(string signerKeyId, string signerPublicKey, IReadOnlyList<KeyValuePair<string, byte[]>> keys, CancellationToken cancellationToken);
}

namespace Relay.Auth.Verification;

/// <summary>
/// The configured keys by name, for protocols whose clients present a key's name and prove its secret with an HMAC
/// instead of sending it (Pusher Channels: the app key on the WebSocket URL, signed channel auth and HTTP requests).
/// The secret never leaves: callers get signatures computed with it.
/// </summary>
public interface IRelayKeys
{
    /// <summary>The principal of key <paramref name="name"/> (<c>APPID.KEYID</c>) with its capabilities and no client id; null when no such key exists.</summary>
    RelayPrincipal? Find(string name);

    /// <summary>Writes HMAC-SHA256 of <paramref name="data"/> keyed with key <paramref name="name"/>'s secret into <paramref name="hash"/> (32 bytes); false when no such key exists.</summary>
    bool TryHmacSha256(string name, ReadOnlySpan<byte> data, Span<byte> hash);
}

using System.Security.Cryptography;
using System.Text;
using Relay.Auth.Verification;

namespace Relay.Pusher;

/// <summary>
/// Pusher's HMAC-SHA256 signatures, keyed with a Relay key's secret: channel auth (<c>key:hex</c> over
/// <c>socket_id:channel[:channel_data]</c>), user sign-in (over <c>socket_id::user::user_data</c>) and HTTP API requests
/// (hex over <c>METHOD\nPATH\nquery</c>). Compared in constant time.
/// </summary>
internal static class PusherSignatures
{
    /// <summary>Whether <paramref name="auth"/> is <c>key:hex</c> for key <paramref name="keyName"/>, signing <paramref name="text"/>.</summary>
    public static bool VerifyAuth(IRelayKeys keys, string keyName, string? auth, string text)
    {
        if (auth is null)
        {
            return false;
        }

        var colon = auth.LastIndexOf(':');
        if (colon <= 0 || !auth.AsSpan(0, colon).SequenceEqual(keyName))
        {
            return false;
        }

        return VerifyHex(keys, keyName, auth.AsSpan(colon + 1), text);
    }

    /// <summary>Whether <paramref name="hex"/> is the hex HMAC-SHA256 of <paramref name="text"/> with the key's secret.</summary>
    public static bool VerifyHex(IRelayKeys keys, string keyName, ReadOnlySpan<char> hex, string text)
    {
        Span<byte> expected = stackalloc byte[32];
        if (!keys.TryHmacSha256(keyName, Encoding.UTF8.GetBytes(text), expected))
        {
            return false;
        }

        Span<byte> given = stackalloc byte[32];
        if (hex.Length != 64 || Convert.FromHexString(hex, given, out _, out var written) != System.Buffers.OperationStatus.Done || written != 32)
        {
            return false;
        }

        return CryptographicOperations.FixedTimeEquals(expected, given);
    }

    /// <summary>The hex HMAC-SHA256 of <paramref name="text"/> with the key's secret (webhooks, tests); null when no such key.</summary>
    public static string? Sign(IRelayKeys keys, string keyName, string text)
    {
        Span<byte> hash = stackalloc byte[32];
        return keys.TryHmacSha256(keyName, Encoding.UTF8.GetBytes(text), hash) ? Convert.ToHexStringLower(hash) : null;
    }
}

using System.Text;
using Relay.Core.Protocol;

namespace Relay.Auth.Verification.Keys;

/// <summary>Reads <c>Authorization</c> headers: the scheme, and the key inside <c>Basic base64(APPID.KEYID:SECRET)</c>.</summary>
internal static class BasicCredentials
{
    /// <summary>Room for a 64-character app id, a 64-character key id and a long secret.</summary>
    public const int MaxEncodedLength = 1024;

    /// <summary>Whether <paramref name="header"/> uses <paramref name="scheme"/> (case-insensitive); <paramref name="parameter"/> is what follows.</summary>
    public static bool TryGetScheme(ReadOnlySpan<char> header, string scheme, out ReadOnlySpan<char> parameter)
    {
        header = header.Trim();
        if (header.Length > scheme.Length
            && header.StartsWith(scheme, StringComparison.OrdinalIgnoreCase)
            && header[scheme.Length] == ' ')
        {
            parameter = header[(scheme.Length + 1)..].Trim();
            return true;
        }

        parameter = default;
        return false;
    }

    /// <summary>Decodes the base64 of a Basic header and checks the key in it; null on success, else the 40102 to answer with (see <see cref="KeyStore.Authenticate"/>).</summary>
    public static RelayError? Authenticate(ReadOnlySpan<char> base64, KeyStore keys, out ApiKey? key, out string? detail)
    {
        ArgumentNullException.ThrowIfNull(keys);
        key = null;
        detail = null;
        if (base64.IsEmpty || base64.Length > MaxEncodedLength)
        {
            return new RelayError(ErrorCodes.InvalidCredentials, "malformed Basic credentials: expected base64(APPID.KEYID:SECRET)");
        }

        Span<byte> bytes = stackalloc byte[MaxEncodedLength];
        Span<char> chars = stackalloc char[MaxEncodedLength];
        try
        {
            if (!Convert.TryFromBase64Chars(base64, bytes, out var byteCount)
                || !Encoding.UTF8.TryGetChars(bytes[..byteCount], chars, out var charCount))
            {
                return new RelayError(ErrorCodes.InvalidCredentials, "malformed Basic credentials: expected base64(APPID.KEYID:SECRET)");
            }

            return keys.Authenticate(chars[..charCount], out key, out detail);
        }
        finally
        {
            // The secret was in these buffers.
            bytes.Clear();
            chars.Clear();
        }
    }
}

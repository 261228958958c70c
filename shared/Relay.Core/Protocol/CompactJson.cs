using System.Buffers;

namespace Relay.Core.Protocol;

/// <summary>
/// Copies a client's JSON payload without the whitespace between its tokens, on the way in. Payloads are relayed as
/// raw bytes, so whitespace a publisher sent would reach every subscriber: a line break ends a Server-Sent Events
/// <c>data:</c> line early and breaks the stream's JSON for every reader, and the frame encoded once per message is
/// larger for it. Escapes inside strings are kept exactly as sent.
/// </summary>
public static class CompactJson
{
    private static readonly SearchValues<byte> Whitespace = SearchValues.Create(" \t\r\n"u8);

    /// <summary>
    /// A copy of <paramref name="json"/> without insignificant whitespace. <paramref name="json"/> must be one valid
    /// JSON value (as <see cref="System.Text.Json.Utf8JsonReader"/> accepted it): strings then hold no raw control
    /// characters, so the only whitespace inside them is a space, which is kept.
    /// </summary>
    public static byte[] Copy(ReadOnlySpan<byte> json)
    {
        // Most payloads have no whitespace at all: one vectorized search, then a plain copy.
        var first = json.IndexOfAny(Whitespace);
        if (first < 0)
        {
            return json.ToArray();
        }

        var length = Walk(json, first, []);
        if (length == json.Length)
        {
            return json.ToArray();
        }

        var copy = new byte[length];
        Walk(json, first, copy);
        return copy;
    }

    /// <summary>Copies what is kept into <paramref name="target"/> (when it is not empty); returns how many bytes are kept.</summary>
    private static int Walk(ReadOnlySpan<byte> json, int start, Span<byte> target)
    {
        // Bytes before the first whitespace are outside a string only if an even number of unescaped quotes precede it.
        var inString = false;
        var escaped = false;
        for (var i = 0; i < start; i++)
        {
            Step(json[i], ref inString, ref escaped);
        }

        if (!target.IsEmpty)
        {
            json[..start].CopyTo(target);
        }

        var kept = start;
        for (var i = start; i < json.Length; i++)
        {
            var b = json[i];
            if (!inString && b is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n')
            {
                continue;
            }

            Step(b, ref inString, ref escaped);
            if (!target.IsEmpty)
            {
                target[kept] = b;
            }

            kept++;
        }

        return kept;
    }

    private static void Step(byte b, ref bool inString, ref bool escaped)
    {
        if (escaped)
        {
            escaped = false;
        }
        else if (inString && b == (byte)'\\')
        {
            escaped = true;
        }
        else if (b == (byte)'"')
        {
            inString = !inString;
        }
    }
}

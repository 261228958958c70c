using System.Buffers;
using System.Text;
using System.Text.Json;

namespace Relay.Ingress.Pusher;

/// <summary>
/// Parses what a Pusher client or app server sends (frames, data given as a string, channel_data, user_data, API bodies)
/// into a document every later read can trust: JSON whose strings are all text. <see cref="JsonDocument.Parse(ReadOnlyMemory{byte}, JsonDocumentOptions)"/>
/// takes invalid UTF-8 inside a string and escapes of lone surrogates (<c>"\ud800"</c>), and the string's reader then
/// throws (over the WebSocket the connection dropped or an error was logged, over the HTTP API a 500); such input is
/// refused here, at the door, like any other malformed JSON (found by <c>PusherFuzzTests</c>).
/// </summary>
internal static class PusherJson
{
    /// <summary>The document, or null when <paramref name="utf8"/> is not JSON whose strings are text.</summary>
    public static JsonDocument? TryParse(ReadOnlyMemory<byte> utf8)
    {
        if (!System.Text.Unicode.Utf8.IsValid(utf8.Span) || !EscapesAreText(utf8.Span))
        {
            return null;
        }

        try
        {
            return JsonDocument.Parse(utf8);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The document of a JSON text given as a string, or null (see <see cref="TryParse(ReadOnlyMemory{byte})"/>).</summary>
    public static JsonDocument? TryParse(string text) => TryParse(Encoding.UTF8.GetBytes(text));

    // Whether every escaped string unescapes to valid UTF-16 (the bytes are valid UTF-8 already); false for bad JSON too.
    private static bool EscapesAreText(ReadOnlySpan<byte> utf8)
    {
        var reader = new Utf8JsonReader(utf8);
        char[]? rented = null;
        try
        {
            while (reader.Read())
            {
                if (reader.TokenType is JsonTokenType.String or JsonTokenType.PropertyName && reader.ValueIsEscaped)
                {
                    var length = reader.HasValueSequence ? checked((int)reader.ValueSequence.Length) : reader.ValueSpan.Length;
                    if (rented is null || rented.Length < length)
                    {
                        if (rented is not null)
                        {
                            ArrayPool<char>.Shared.Return(rented);
                        }

                        rented = ArrayPool<char>.Shared.Rent(length);
                    }

                    reader.CopyString(rented);
                }
            }

            return true;
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            return false;
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<char>.Shared.Return(rented);
            }
        }
    }
}

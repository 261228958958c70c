using System.Text.Json;

namespace Relay.Core.Messages;

/// <summary>
/// Whether a payload that came as bytes (MQTT, gRPC, AMQP, Kafka, Pusher) is exactly one JSON value, so JSON
/// subscribers get it as JSON rather than base64 or a string (<see cref="PublishItem.DataIsJson"/>). Most payloads that
/// are not JSON (binary, plain text) are told by their first byte; the JSON reader, which throws on the rest, is asked
/// only about those that could be.
/// </summary>
public static class JsonPayload
{
    private static readonly JsonReaderOptions Options = new() { CommentHandling = JsonCommentHandling.Disallow };

    /// <summary>
    /// True when <paramref name="data"/> is one JSON value, with JSON's whitespace around it allowed; a JSON string
    /// counts only when <paramref name="stringAllowed"/> (Pusher keeps a string's text as a string of its own).
    /// </summary>
    public static bool IsOneValue(ReadOnlySpan<byte> data, bool stringAllowed = true)
    {
        var text = data.Trim(" \t\r\n"u8);
        if (text.IsEmpty)
        {
            return false;
        }

        switch (text[0])
        {
            case (byte)'"' when !stringAllowed:
                return false;
            case (byte)'{' or (byte)'[' or (byte)'"' or (byte)'-' or (>= (byte)'0' and <= (byte)'9'):
                break;

            // The only values that start with a letter.
            case (byte)'t':
                return text.SequenceEqual("true"u8);
            case (byte)'f':
                return text.SequenceEqual("false"u8);
            case (byte)'n':
                return text.SequenceEqual("null"u8);
            default:
                return false;
        }

        try
        {
            var reader = new Utf8JsonReader(text, Options);
            return reader.Read() && reader.TrySkip() && !reader.Read();
        }
        catch (JsonException)
        {
            return false;
        }
    }
}

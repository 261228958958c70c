using System.Buffers;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Relay.Core.Messages;

namespace Relay.Pusher;

/// <summary>
/// Pusher event data is a string; Relay message data is JSON (or bytes). The mapping keeps both sides exact
/// (docs/pusher.md): a string that is one JSON value other than a string is kept as that JSON, byte for byte, so Relay
/// subscribers get the object and Pusher subscribers get the same text back; any other string is kept as a JSON string.
/// Going out, a JSON string is sent as it is, other JSON as its text, and bytes that are not JSON (MQTT) as UTF-8 text,
/// or base64 when they are not UTF-8.
/// </summary>
internal static class PusherData
{
    /// <summary>Escaping for frames: only what JSON requires, so text reaches clients as it was sent.</summary>
    public static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, SkipValidation = true };

    private static readonly JsonWriterOptions StringOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>The Relay data of a Pusher data string.</summary>
    public static byte[] FromString(string data)
    {
        var bytes = Encoding.UTF8.GetBytes(data);
        return JsonPayload.IsOneValue(bytes, stringAllowed: false) ? bytes : EncodeString(data);
    }

    /// <summary>The Relay data of a data value as a client sent it in a frame: a JSON string stays a JSON string; other JSON as the string of its text would.</summary>
    public static byte[] FromElement(JsonElement data) => data.ValueKind switch
    {
        JsonValueKind.Undefined => "null"u8.ToArray(),
        JsonValueKind.String => FromString(data.GetString()!),
        _ => Encoding.UTF8.GetBytes(data.GetRawText()),
    };

    /// <summary>The size Pusher's limit counts: the UTF-8 bytes of the data string (of a string value's text, not its JSON).</summary>
    public static int SizeOf(JsonElement data) => data.ValueKind switch
    {
        JsonValueKind.Undefined => 0,
        JsonValueKind.String => Encoding.UTF8.GetByteCount(data.GetString()!),
        _ => Encoding.UTF8.GetByteCount(data.GetRawText()),
    };

    /// <summary>The string a Pusher client is given for <paramref name="data"/>, written as a JSON string value.</summary>
    public static void Write(Utf8JsonWriter writer, ReadOnlySpan<byte> propertyName, ReadOnlyMemory<byte> data, bool isJson)
    {
        var span = data.Span;
        if (isJson)
        {
            var start = 0;
            while (start < span.Length && span[start] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n')
            {
                start++;
            }

            if (start < span.Length && span[start] == (byte)'"')
            {
                // Already a JSON string: its text is the data.
                writer.WritePropertyName(propertyName);
                writer.WriteRawValue(span[start..], skipInputValidation: true);
                return;
            }

            writer.WriteString(propertyName, span);
            return;
        }

        if (System.Text.Unicode.Utf8.IsValid(span))
        {
            writer.WriteString(propertyName, span);
        }
        else
        {
            writer.WriteBase64String(propertyName, span);
        }
    }

    /// <summary>The string a Pusher client is given for <paramref name="data"/> (for replies built off the hot path).</summary>
    public static string ToText(ReadOnlyMemory<byte> data, bool isJson)
    {
        var buffer = new ArrayBufferWriter<byte>(data.Length + 16);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            writer.WriteStartObject();
            Write(writer, "d"u8, data, isJson);
            writer.WriteEndObject();
        }

        using var document = JsonDocument.Parse(buffer.WrittenMemory);
        return document.RootElement.GetProperty("d"u8).GetString()!;
    }

    private static byte[] EncodeString(string data)
    {
        var buffer = new ArrayBufferWriter<byte>(data.Length + 8);
        using (var writer = new Utf8JsonWriter(buffer, StringOptions))
        {
            writer.WriteStringValue(data);
        }

        return buffer.WrittenSpan.ToArray();
    }
}

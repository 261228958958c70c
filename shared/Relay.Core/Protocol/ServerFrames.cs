using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Relay.Core.Messages;

namespace Relay.Core.Protocol;

/// <summary>Writes the server's frames of the v1 protocol. Every frame is one JSON object.</summary>
public static class ServerFrames
{
    /// <summary>Writer options: compact, and no HTML escaping (frames never land in HTML unescaped).</summary>
    public static JsonWriterOptions WriterOptions { get; } = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, SkipValidation = false };

    /// <summary>Starts an <c>ok</c> reply (or another reply type) with its <c>ref</c>; the caller adds fields and ends the object.</summary>
    public static void BeginReply(Utf8JsonWriter writer, string type, byte[]? reference)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStartObject();
        writer.WriteString("type"u8, type);
        if (reference is not null)
        {
            writer.WritePropertyName("ref"u8);
            writer.WriteRawValue(reference, skipInputValidation: true);
        }
    }

    /// <summary>
    /// The <c>ok</c> of a publish, <c>{"type":"ok","ref":…,"channel":…,"seq":…}</c> (no <c>ref</c> when the request had
    /// none), put together in an array of its exact size: a publisher gets one per message, and a JSON writer for these
    /// few fixed fields cost more than the rest of the reply. The bytes are the ones <see cref="BeginReply"/> and the
    /// writer would produce.
    /// </summary>
    /// <param name="reference">The request's raw <c>ref</c> JSON, or null.</param>
    /// <param name="channelJson">The channel as a JSON string, quotes included (<see cref="JsonString"/>).</param>
    /// <param name="seq">The message's seq.</param>
    public static byte[] PublishOk(byte[]? reference, ReadOnlySpan<byte> channelJson, long seq)
    {
        Span<byte> digits = stackalloc byte[20];
        if (!seq.TryFormat(digits, out var digitCount, provider: CultureInfo.InvariantCulture))
        {
            throw new InvalidOperationException("a long has at most 20 digits");
        }

        var start = "{\"type\":\"ok\""u8;
        var refField = ",\"ref\":"u8;
        var channelField = ",\"channel\":"u8;
        var seqField = ",\"seq\":"u8;
        var length = start.Length + (reference is null ? 0 : refField.Length + reference.Length) + channelField.Length + channelJson.Length + seqField.Length + digitCount + 1;
        var frame = new byte[length];
        var at = Append(frame, 0, start);
        if (reference is not null)
        {
            at = Append(frame, at, refField);
            at = Append(frame, at, reference);
        }

        at = Append(frame, at, channelField);
        at = Append(frame, at, channelJson);
        at = Append(frame, at, seqField);
        at = Append(frame, at, digits[..digitCount]);
        frame[at] = (byte)'}';
        return frame;
    }

    /// <summary><paramref name="value"/> as a JSON string, quotes included, escaped as every frame escapes strings.</summary>
    public static byte[] JsonString(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        using var frame = FrameWriter.Rent();
        frame.Writer.WriteStringValue(value);
        return frame.ToArray();
    }

    /// <summary>Writes an <c>error</c> reply.</summary>
    public static void WriteError(Utf8JsonWriter writer, byte[]? reference, RelayError error)
    {
        ArgumentNullException.ThrowIfNull(error);
        BeginReply(writer, "error", reference);
        writer.WriteNumber("code"u8, error.Code);
        writer.WriteString("message"u8, error.Message);
        writer.WriteEndObject();
    }

    /// <summary>Writes a <c>disconnect</c> push.</summary>
    public static void WriteDisconnect(Utf8JsonWriter writer, RelayError error, bool reconnect)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(error);
        writer.WriteStartObject();
        writer.WriteString("type"u8, "disconnect");
        writer.WriteNumber("code"u8, error.Code);
        writer.WriteString("message"u8, error.Message);
        writer.WriteBoolean("reconnect"u8, reconnect);
        writer.WriteEndObject();
    }

    /// <summary>Writes the fields of a message object (no start/end), shared by the push and history.</summary>
    public static void WriteMessageFields(Utf8JsonWriter writer, RelayMessage message)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(message);
        writer.WriteString("channel"u8, message.Channel);
        writer.WriteNumber("seq"u8, message.Seq);
        writer.WriteString("epoch"u8, message.Epoch);
        if (message.Id is not null)
        {
            writer.WriteString("id"u8, message.Id);
        }

        if (message.Name is not null)
        {
            writer.WriteString("name"u8, message.Name);
        }

        if (message.DataIsJson)
        {
            if (!message.Data.IsEmpty)
            {
                writer.WritePropertyName("data"u8);
                writer.WriteRawValue(message.Data.Span, skipInputValidation: true);
            }
        }
        else
        {
            writer.WriteString("encoding"u8, "base64");
            writer.WriteBase64String("data"u8, message.Data.Span);
        }

        if (message.ClientId is not null)
        {
            writer.WriteString("clientId"u8, message.ClientId);
        }

        writer.WriteNumber("timestamp"u8, message.Timestamp);
    }

    /// <summary>Writes a message as a JSON object (with <c>type</c> when <paramref name="asPush"/>).</summary>
    public static void WriteMessage(Utf8JsonWriter writer, RelayMessage message, bool asPush)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStartObject();
        if (asPush)
        {
            writer.WriteString("type"u8, "message");
        }

        WriteMessageFields(writer, message);
        writer.WriteEndObject();
    }

    /// <summary>Writes a presence event push, or (without <c>type</c>, <c>channel</c>, <c>action</c>) a member of a presence listing.</summary>
    public static void WritePresence(Utf8JsonWriter writer, RelayMessage presence, bool asPush)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(presence);
        writer.WriteStartObject();
        if (asPush)
        {
            writer.WriteString("type"u8, "presence");
            writer.WriteString("channel"u8, presence.Channel);
            writer.WriteString("action"u8, presence.PresenceAction);
        }

        writer.WriteString("clientId"u8, presence.ClientId);
        writer.WriteString("connectionId"u8, presence.ConnectionId);
        if (!presence.Data.IsEmpty)
        {
            writer.WritePropertyName("data"u8);
            writer.WriteRawValue(presence.Data.Span, skipInputValidation: true);
        }

        writer.WriteEndObject();
    }

    private static int Append(byte[] frame, int at, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(frame.AsSpan(at));
        return at + bytes.Length;
    }

    /// <summary>
    /// The push frame of <paramref name="message"/>, encoded on first use and cached on the message, so every
    /// subscriber is sent the same bytes. Two threads racing here both produce identical bytes; either is kept.
    /// </summary>
    public static byte[] PushFrame(RelayMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (message.EncodedFrame is not byte[] frame)
        {
            frame = EncodeMessagePush(message);
            message.EncodedFrame = frame;
        }

        return frame;
    }

    /// <summary>The push of <paramref name="message"/> (a <c>message</c>, or a <c>presence</c> event) as UTF-8 bytes.</summary>
    public static byte[] EncodeMessagePush(RelayMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        return TryEncodePlainMessagePush(message) ?? EncodeWithWriter(message);
    }

    /// <summary>The push as <see cref="Utf8JsonWriter"/> writes it: the reference <see cref="TryEncodePlainMessagePush"/> must match.</summary>
    internal static byte[] EncodeWithWriter(RelayMessage message)
    {
        using var frame = FrameWriter.Rent();
        if (message.PresenceAction is null)
        {
            WriteMessage(frame.Writer, message, asPush: true);
        }
        else
        {
            WritePresence(frame.Writer, message, asPush: true);
        }

        return frame.ToArray();
    }

    // Characters a frame's strings carry as they are: printable ASCII but the quote and the backslash, which the
    // writer escapes, and & ' + < > `, which some of its encoders escape (a string with any of them takes the writer).
    private static readonly SearchValues<char> s_plain = SearchValues.Create(
        " !#$%()*,-./0123456789:;=?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_abcdefghijklmnopqrstuvwxyz{|}~");

    private static bool IsPlain(string? value) => value is null || value.AsSpan().IndexOfAnyExcept(s_plain) < 0;

    /// <summary>
    /// The push of a JSON-data message whose strings need no escaping (channel names, epochs, ids, names and client ids
    /// almost always), put together from bytes into one array of the exact size: byte for byte what the writer writes
    /// (ServerFramesTests compares them), without its escaping checks and transcoding or the copy out of its buffer
    /// (~4% of the server's CPU in <c>publish-ws-1</c>). Null for anything else.
    /// </summary>
    internal static byte[]? TryEncodePlainMessagePush(RelayMessage message)
    {
        if (message.PresenceAction is not null || !message.DataIsJson || !IsPlain(message.Channel) || !IsPlain(message.Epoch)
            || !IsPlain(message.Id) || !IsPlain(message.Name) || !IsPlain(message.ClientId))
        {
            return null;
        }

        Span<byte> seq = stackalloc byte[20];
        Span<byte> timestamp = stackalloc byte[20];
        if (!message.Seq.TryFormat(seq, out var seqDigits, provider: CultureInfo.InvariantCulture)
            || !message.Timestamp.TryFormat(timestamp, out var timestampDigits, provider: CultureInfo.InvariantCulture))
        {
            throw new InvalidOperationException("a long has at most 20 digits");
        }

        var start = "{\"type\":\"message\",\"channel\":\""u8;
        var seqField = "\",\"seq\":"u8;
        var epochField = ",\"epoch\":\""u8;
        var idField = "\",\"id\":\""u8;
        var nameField = "\",\"name\":\""u8;
        var dataField = "\",\"data\":"u8;
        var clientIdAfterData = ",\"clientId\":\""u8;
        var clientIdAfterString = "\",\"clientId\":\""u8;
        var timestampAfterValue = ",\"timestamp\":"u8;
        var timestampAfterString = "\",\"timestamp\":"u8;
        var data = message.Data.Span;
        var length = start.Length + message.Channel.Length + seqField.Length + seqDigits + epochField.Length + message.Epoch.Length
            + (message.Id is null ? 0 : idField.Length + message.Id.Length)
            + (message.Name is null ? 0 : nameField.Length + message.Name.Length)
            + (data.IsEmpty ? 0 : dataField.Length + data.Length)
            + (message.ClientId is null ? 0 : (data.IsEmpty ? clientIdAfterString.Length : clientIdAfterData.Length) + message.ClientId.Length)
            + (data.IsEmpty || message.ClientId is not null ? timestampAfterString.Length : timestampAfterValue.Length) + timestampDigits + 1;

        // Each string field leaves its closing quote to the field after it, whose prefix starts with it.
        var frame = new byte[length];
        var at = Append(frame, 0, start);
        at = AppendAscii(frame, at, message.Channel);
        at = Append(frame, at, seqField);
        at = Append(frame, at, seq[..seqDigits]);
        at = Append(frame, at, epochField);
        at = AppendAscii(frame, at, message.Epoch);
        if (message.Id is not null)
        {
            at = Append(frame, at, idField);
            at = AppendAscii(frame, at, message.Id);
        }

        if (message.Name is not null)
        {
            at = Append(frame, at, nameField);
            at = AppendAscii(frame, at, message.Name);
        }

        var afterString = true;
        if (!data.IsEmpty)
        {
            at = Append(frame, at, dataField);
            at = Append(frame, at, data);
            afterString = false;
        }

        if (message.ClientId is not null)
        {
            at = Append(frame, at, afterString ? clientIdAfterString : clientIdAfterData);
            at = AppendAscii(frame, at, message.ClientId);
            afterString = true;
        }

        at = Append(frame, at, afterString ? timestampAfterString : timestampAfterValue);
        at = Append(frame, at, timestamp[..timestampDigits]);
        frame[at] = (byte)'}';
        return frame;
    }

    private static int AppendAscii(byte[] frame, int at, string value) => at + Encoding.ASCII.GetBytes(value, frame.AsSpan(at));
}

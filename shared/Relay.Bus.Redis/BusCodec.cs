using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Relay.Bus.FanOut;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Core.Protocol;

namespace Relay.Bus.Redis;

/// <summary>
/// The Redis bus's wire formats (internal to Relay; all processes of one deployment run the same version).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>A sequenced message (routing → fan-out, in a node batch): <c>seq:timestampMs:epoch:presenceAction:json</c>, where
/// the JSON holds the rest of the message. The prefix is what a Lua script can fill in: the routing scripts give the seq, the
/// epoch and the time on the server, so the message needs no second round trip.</item>
/// <item>A node batch (fan-out → ingress node): records of a 4-byte big-endian length and a sequenced message.</item>
/// <item>Routing requests and replies, interest changes: JSON objects with short field names.</item>
/// <item>A message's or publish item's MQTT 5 properties: <c>"mp"</c>, only when it has some (see <c>WriteProperties</c>).</item>
/// </list>
/// </remarks>
public static class BusCodec
{
    private static readonly JsonWriterOptions WriterOptions = new() { SkipValidation = true };

    /// <summary>The message's fields other than seq, time, epoch and presence action, as the JSON part of a sequenced message.</summary>
    public static byte[] EncodeBody(RelayMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var buffer = new ArrayBufferWriter<byte>(128 + message.Data.Length);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            writer.WriteStartObject();
            WriteBodyFields(writer, message.App, message.Channel, message.Id, message.Name, message.Data, message.DataIsJson, message.ClientId, message.ConnectionId, message.TraceParent, message.Properties);
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>A complete sequenced message: the prefix then the body.</summary>
    public static byte[] EncodeSequenced(RelayMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var prefix = Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{message.Seq}:{message.Timestamp}:{message.Epoch}:{message.PresenceAction}:"));
        var body = EncodeBody(message);
        var result = new byte[prefix.Length + body.Length];
        prefix.CopyTo(result, 0);
        body.CopyTo(result, prefix.Length);
        return result;
    }

    /// <summary>Reads a sequenced message (<c>seq:timestampMs:epoch:presenceAction:json</c>).</summary>
    public static RelayMessage DecodeSequenced(ReadOnlyMemory<byte> frame)
    {
        var span = frame.Span;
        var offset = 0;
        var seq = ReadLong(span, ref offset);
        var timestamp = ReadLong(span, ref offset);
        var epoch = ReadText(span, ref offset);
        var action = ReadText(span, ref offset);
        return DecodeBody(frame[offset..], seq, timestamp, epoch, action.Length == 0 ? null : action);
    }

    /// <summary>Reads the JSON part of a message and completes it with what the prefix or the history entry gave.</summary>
    public static RelayMessage DecodeBody(ReadOnlyMemory<byte> body, long seq, long timestamp, string epoch, string? presenceAction)
    {
        var reader = new Utf8JsonReader(body.Span);
        Expect(ref reader, JsonTokenType.StartObject);
        var fields = ReadMessageFields(ref reader, body);
        return fields.ToMessage(seq, timestamp, epoch, presenceAction);
    }

    /// <summary>Appends one record (length, then the sequenced message) to a node batch.</summary>
    public static void AppendToBatch(ArrayBufferWriter<byte> batch, ReadOnlySpan<byte> sequenced)
    {
        ArgumentNullException.ThrowIfNull(batch);
        BinaryPrimitives.WriteInt32BigEndian(batch.GetSpan(4), sequenced.Length);
        batch.Advance(4);
        batch.Write(sequenced);
    }

    /// <summary>The sequenced messages of a node batch, in order.</summary>
    public static IEnumerable<ReadOnlyMemory<byte>> ReadBatch(ReadOnlyMemory<byte> batch)
    {
        var offset = 0;
        while (offset < batch.Length)
        {
            if (batch.Length - offset < 4)
            {
                throw new FormatException("a node batch ends inside a record length");
            }

            var length = BinaryPrimitives.ReadInt32BigEndian(batch.Span[offset..]);
            offset += 4;
            if (length < 0 || length > batch.Length - offset)
            {
                throw new FormatException("a node batch record is longer than the batch");
            }

            yield return batch.Slice(offset, length);
            offset += length;
        }
    }

    /// <summary>Encodes a routing request with its correlation id and the channel its reply goes to.</summary>
    public static byte[] EncodeRequest(long correlation, string replyTo, RoutingRequest request) => EncodeRequest(correlation, replyTo, request, default);

    /// <summary>Encodes a routing request with its place among the caller's changes of its shard.</summary>
    internal static byte[] EncodeRequest(long correlation, string replyTo, RoutingRequest request, RequestOrder order)
    {
        ArgumentNullException.ThrowIfNull(request);
        return Write(writer =>
        {
            writer.WriteNumber("r"u8, correlation);
            writer.WriteString("to"u8, replyTo);
            if (order.IsSet)
            {
                writer.WriteNumber("on"u8, order.Number);
                writer.WriteNumber("of"u8, order.Floor);
            }

            writer.WriteString("a"u8, request.App);
            writer.WriteString("c"u8, request.Channel);
            switch (request)
            {
                case PublishRequest publish:
                    writer.WriteString("k"u8, "pub"u8);
                    WriteOptional(writer, "u"u8, publish.ClientId);
                    WriteOptional(writer, "tp"u8, publish.TraceParent);
                    writer.WriteStartArray("items"u8);
                    foreach (var item in publish.Items)
                    {
                        writer.WriteStartObject();
                        WriteOptional(writer, "i"u8, item.Id);
                        WriteOptional(writer, "n"u8, item.Name);
                        WriteData(writer, item.Data, item.DataIsJson);
                        WriteProperties(writer, item.Properties);
                        writer.WriteEndObject();
                    }

                    writer.WriteEndArray();
                    break;
                case HistoryRequest history:
                    writer.WriteString("k"u8, "hist"u8);
                    writer.WriteNumber("l"u8, history.Limit);
                    if (history.Before is { } before)
                    {
                        writer.WriteNumber("bf"u8, before);
                    }

                    if (history.AfterSeq is { } after)
                    {
                        writer.WriteNumber("af"u8, after);
                    }

                    if (history.MaxBytes > 0)
                    {
                        writer.WriteNumber("mb"u8, history.MaxBytes);
                    }

                    break;
                case PositionRequest:
                    writer.WriteString("k"u8, "pos"u8);
                    break;
                case PresenceEventsRequest events:
                    writer.WriteString("k"u8, "pev"u8);
                    writer.WriteNumber("l"u8, events.Limit);
                    writer.WriteNumber("af"u8, events.AfterSeq);
                    break;
                case PresenceRequest presence:
                    writer.WriteString("k"u8, "pres"u8);
                    writer.WriteString("act"u8, presence.Action);
                    writer.WriteString("u"u8, presence.ClientId);
                    writer.WriteString("cn"u8, presence.ConnectionId);
                    WriteOptional(writer, "nd"u8, presence.NodeId);
                    WriteData(writer, presence.Data, isJson: true);
                    break;
                case PresenceGetRequest:
                    writer.WriteString("k"u8, "pget"u8);
                    break;
                default:
                    throw new ArgumentException($"unknown routing request {request.GetType().Name}", nameof(request));
            }
        });
    }

    /// <summary>Reads a routing request.</summary>
    public static (long Correlation, string ReplyTo, RoutingRequest Request) DecodeRequest(ReadOnlyMemory<byte> frame)
    {
        var (correlation, replyTo, request, _) = DecodeOrderedRequest(frame);
        return (correlation, replyTo, request);
    }

    /// <summary>Reads a routing request and its place among the caller's changes of its shard (default when it has none).</summary>
    internal static (long Correlation, string ReplyTo, RoutingRequest Request, RequestOrder Order) DecodeOrderedRequest(ReadOnlyMemory<byte> frame)
    {
        var reader = new Utf8JsonReader(frame.Span);
        Expect(ref reader, JsonTokenType.StartObject);
        long correlation = 0, limit = 0, maxBytes = 0, number = 0, floor = 0;
        long? before = null, after = null;
        string? replyTo = null, app = null, channel = null, kind = null, clientId = null, traceParent = null, action = null, connection = null, node = null;
        ReadOnlyMemory<byte> data = default;
        List<PublishItem>? items = null;
        while (Next(ref reader) == JsonTokenType.PropertyName)
        {
            var name = reader.GetString();
            Next(ref reader);
            switch (name)
            {
                case "r": correlation = reader.GetInt64(); break;
                case "on": number = reader.GetInt64(); break;
                case "of": floor = reader.GetInt64(); break;
                case "to": replyTo = reader.GetString(); break;
                case "a": app = reader.GetString(); break;
                case "c": channel = reader.GetString(); break;
                case "k": kind = reader.GetString(); break;
                case "u": clientId = reader.GetString(); break;
                case "tp": traceParent = reader.GetString(); break;
                case "l": limit = reader.GetInt64(); break;
                case "bf": before = reader.GetInt64(); break;
                case "af": after = reader.GetInt64(); break;
                case "mb": maxBytes = reader.GetInt64(); break;
                case "act": action = reader.GetString(); break;
                case "cn": connection = reader.GetString(); break;
                case "nd": node = reader.GetString(); break;
                case "d": data = RawValue(ref reader, frame); break;
                case "items":
                    items = [];
                    while (Next(ref reader) == JsonTokenType.StartObject)
                    {
                        var fields = ReadMessageFields(ref reader, frame);
                        items.Add(new PublishItem(fields.Name, fields.Data, fields.DataIsJson, fields.Id) { Properties = fields.Properties });
                    }

                    break;
                default: reader.Skip(); break;
            }
        }

        if (replyTo is null || app is null || channel is null)
        {
            throw new FormatException("a routing request lacks its reply channel, app or channel");
        }

        RoutingRequest request = kind switch
        {
            "pub" => new PublishRequest(app, channel, items ?? [], clientId, traceParent) { Origin = number > 0 ? new PublishOrigin(replyTo, number) { Floor = floor } : null },
            "hist" => new HistoryRequest(app, channel, (int)limit, before, after, maxBytes),
            "pos" => new PositionRequest(app, channel),
            "pev" => new PresenceEventsRequest(app, channel, after ?? 0, (int)limit),
            "pres" => new PresenceRequest(app, channel, action ?? "enter", clientId ?? "", connection ?? "", data, node),
            "pget" => new PresenceGetRequest(app, channel),
            _ => throw new FormatException($"unknown routing request kind '{kind}'"),
        };
        return (correlation, replyTo, request, new RequestOrder(number, floor));
    }

    /// <summary>Encodes a routing reply.</summary>
    public static byte[] EncodeReply(long correlation, RoutingReply reply)
    {
        ArgumentNullException.ThrowIfNull(reply);
        return Write(writer =>
        {
            writer.WriteNumber("r"u8, correlation);
            switch (reply)
            {
                case PublishReply publish:
                    writer.WriteString("k"u8, "pub"u8);
                    writer.WriteString("e"u8, publish.Epoch);
                    writer.WriteStartArray("s"u8);
                    foreach (var seq in publish.Seqs)
                    {
                        writer.WriteNumberValue(seq);
                    }

                    writer.WriteEndArray();
                    break;
                case HistoryReply history:
                    writer.WriteString("k"u8, "hist"u8);
                    writer.WriteString("e"u8, history.Position.Epoch);
                    writer.WriteNumber("sq"u8, history.Position.Seq);
                    WritePresenceSeq(writer, history.Position);
                    writer.WriteBoolean("ok"u8, history.Complete);
                    if (history.Truncated)
                    {
                        writer.WriteBoolean("tr"u8, true);
                    }

                    WriteMessages(writer, history.Messages);
                    break;
                case PositionReply position:
                    writer.WriteString("k"u8, "pos"u8);
                    writer.WriteString("e"u8, position.Position.Epoch);
                    writer.WriteNumber("sq"u8, position.Position.Seq);
                    WritePresenceSeq(writer, position.Position);
                    break;
                case PresenceReply presence:
                    writer.WriteString("k"u8, "pres"u8);
                    WriteMessages(writer, presence.Members);
                    break;
                case ErrorReply error:
                    writer.WriteString("k"u8, "err"u8);
                    writer.WriteNumber("code"u8, error.Error.Code);
                    writer.WriteString("msg"u8, error.Error.Message);
                    break;
                default:
                    throw new ArgumentException($"unknown routing reply {reply.GetType().Name}", nameof(reply));
            }
        });
    }

    /// <summary>Reads a routing reply.</summary>
    public static (long Correlation, RoutingReply Reply) DecodeReply(ReadOnlyMemory<byte> frame)
    {
        var reader = new Utf8JsonReader(frame.Span);
        Expect(ref reader, JsonTokenType.StartObject);
        long correlation = 0, seq = 0, code = 0, presenceSeq = 0;
        string? kind = null, epoch = null, text = null;
        var complete = false;
        var truncated = false;
        List<long>? seqs = null;
        List<RelayMessage>? messages = null;
        while (Next(ref reader) == JsonTokenType.PropertyName)
        {
            var name = reader.GetString();
            Next(ref reader);
            switch (name)
            {
                case "r": correlation = reader.GetInt64(); break;
                case "k": kind = reader.GetString(); break;
                case "e": epoch = reader.GetString(); break;
                case "sq": seq = reader.GetInt64(); break;
                case "psq": presenceSeq = reader.GetInt64(); break;
                case "ok": complete = reader.GetBoolean(); break;
                case "tr": truncated = reader.GetBoolean(); break;
                case "code": code = reader.GetInt64(); break;
                case "msg": text = reader.GetString(); break;
                case "s":
                    seqs = [];
                    while (Next(ref reader) == JsonTokenType.Number)
                    {
                        seqs.Add(reader.GetInt64());
                    }

                    break;
                case "m":
                    messages = [];
                    while (Next(ref reader) == JsonTokenType.StartObject)
                    {
                        var fields = ReadMessageFields(ref reader, frame);
                        messages.Add(fields.ToMessage(fields.Seq, fields.Timestamp, fields.Epoch ?? "", fields.PresenceAction));
                    }

                    break;
                default: reader.Skip(); break;
            }
        }

        RoutingReply reply = kind switch
        {
            "pub" => new PublishReply([.. seqs ?? []], epoch ?? ""),
            "hist" => new HistoryReply(new ChannelPosition(epoch ?? "", seq) { PresenceSeq = presenceSeq }, messages ?? [], complete, truncated),
            "pos" => new PositionReply(new ChannelPosition(epoch ?? "", seq) { PresenceSeq = presenceSeq }),
            "pres" => new PresenceReply(messages ?? []),
            "err" => new ErrorReply(new RelayError((int)code, text ?? "routing failed")),
            _ => throw new FormatException($"unknown routing reply kind '{kind}'"),
        };
        return (correlation, reply);
    }

    private static void WritePresenceSeq(Utf8JsonWriter writer, ChannelPosition position)
    {
        if (position.PresenceSeq > 0)
        {
            writer.WriteNumber("psq"u8, position.PresenceSeq);
        }
    }

    /// <summary>Encodes an interest change.</summary>
    public static byte[] EncodeInterest(InterestChange change)
    {
        ArgumentNullException.ThrowIfNull(change);
        return Write(writer =>
        {
            writer.WriteString("n"u8, change.NodeId);
            writer.WriteString("a"u8, change.App);
            writer.WriteString("c"u8, change.ChannelOrPattern);
            writer.WriteNumber("s"u8, change.Subscribers);
        });
    }

    /// <summary>Reads an interest change.</summary>
    public static InterestChange DecodeInterest(ReadOnlyMemory<byte> frame)
    {
        var reader = new Utf8JsonReader(frame.Span);
        Expect(ref reader, JsonTokenType.StartObject);
        string? node = null, app = null, channel = null;
        var subscribers = 0;
        while (Next(ref reader) == JsonTokenType.PropertyName)
        {
            var name = reader.GetString();
            Next(ref reader);
            switch (name)
            {
                case "n": node = reader.GetString(); break;
                case "a": app = reader.GetString(); break;
                case "c": channel = reader.GetString(); break;
                case "s": subscribers = reader.GetInt32(); break;
                default: reader.Skip(); break;
            }
        }

        return node is null || app is null || channel is null
            ? throw new FormatException("an interest change lacks its node, app or channel")
            : new InterestChange(node, app, channel, subscribers);
    }

    private static void WriteMessages(Utf8JsonWriter writer, IReadOnlyList<RelayMessage> messages)
    {
        writer.WriteStartArray("m"u8);
        foreach (var message in messages)
        {
            writer.WriteStartObject();
            writer.WriteNumber("s"u8, message.Seq);
            writer.WriteNumber("t"u8, message.Timestamp);
            writer.WriteString("e"u8, message.Epoch);
            WriteOptional(writer, "p"u8, message.PresenceAction);
            WriteBodyFields(writer, message.App, message.Channel, message.Id, message.Name, message.Data, message.DataIsJson, message.ClientId, message.ConnectionId, message.TraceParent, message.Properties);
            writer.WriteEndObject();
        }

        writer.WriteEndArray();
    }

    private static void WriteBodyFields(Utf8JsonWriter writer, string app, string channel, string? id, string? name, ReadOnlyMemory<byte> data, bool dataIsJson, string? clientId, string? connectionId, string? traceParent, MessageProperties? properties)
    {
        writer.WriteString("a"u8, app);
        writer.WriteString("c"u8, channel);
        WriteOptional(writer, "i"u8, id);
        WriteOptional(writer, "n"u8, name);
        WriteData(writer, data, dataIsJson);
        WriteOptional(writer, "u"u8, clientId);
        WriteOptional(writer, "cn"u8, connectionId);
        WriteOptional(writer, "tp"u8, traceParent);
        WriteProperties(writer, properties);
    }

    /// <summary>
    /// A message's MQTT properties as <c>"mp":{…}</c> (nothing when it has none): <c>q</c> the QoS it was published at (0 or 1), <c>pf</c> payload format, <c>ex</c>
    /// expiry (Unix ms), <c>ct</c> content type, <c>rt</c> response topic, <c>cd</c> correlation data (base64), <c>up</c>
    /// user properties as one array of name, value, name, value… in order.
    /// </summary>
    private static void WriteProperties(Utf8JsonWriter writer, MessageProperties? properties)
    {
        if (properties is null)
        {
            return;
        }

        writer.WriteStartObject("mp"u8);
        WritePropertyFields(writer, properties);
        writer.WriteEndObject();
    }

    private static void WritePropertyFields(Utf8JsonWriter writer, MessageProperties properties)
    {
        if (properties.PublishedQos is { } qos)
        {
            writer.WriteNumber("q"u8, qos);
        }

        if (properties.PayloadFormatIndicator is { } format)
        {
            writer.WriteNumber("pf"u8, format);
        }

        if (properties.ExpiresAt != 0)
        {
            writer.WriteNumber("ex"u8, properties.ExpiresAt);
        }

        WriteOptional(writer, "ct"u8, properties.ContentType);
        WriteOptional(writer, "rt"u8, properties.ResponseTopic);
        if (properties.CorrelationData is { } correlation)
        {
            writer.WriteBase64String("cd"u8, correlation);
        }

        if (properties.UserProperties is { } user)
        {
            writer.WriteStartArray("up"u8);
            foreach (var (name, value) in user)
            {
                writer.WriteStringValue(name);
                writer.WriteStringValue(value);
            }

            writer.WriteEndArray();
        }
    }

    /// <summary>A message's properties alone, as the JSON object <c>"mp"</c> holds (the Redis retained store keeps them so).</summary>
    internal static byte[] EncodeProperties(MessageProperties properties)
    {
        var buffer = new ArrayBufferWriter<byte>(64);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            writer.WriteStartObject();
            WritePropertyFields(writer, properties);
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Reads what <see cref="EncodeProperties"/> wrote.</summary>
    internal static MessageProperties DecodeProperties(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json);
        Expect(ref reader, JsonTokenType.StartObject);
        return ReadProperties(ref reader);
    }

    private static MessageProperties ReadProperties(ref Utf8JsonReader reader)
    {
        byte? format = null, qos = null;
        long expiresAt = 0;
        string? contentType = null, responseTopic = null;
        byte[]? correlation = null;
        List<KeyValuePair<string, string>>? user = null;
        while (Next(ref reader) == JsonTokenType.PropertyName)
        {
            var name = reader.GetString();
            Next(ref reader);
            switch (name)
            {
                case "q": qos = reader.GetByte(); break;
                case "pf": format = reader.GetByte(); break;
                case "ex": expiresAt = reader.GetInt64(); break;
                case "ct": contentType = reader.GetString(); break;
                case "rt": responseTopic = reader.GetString(); break;
                case "cd": correlation = reader.GetBytesFromBase64(); break;
                case "up":
                    user = [];
                    while (Next(ref reader) == JsonTokenType.String)
                    {
                        var key = reader.GetString()!;
                        Expect(ref reader, JsonTokenType.String);
                        user.Add(new KeyValuePair<string, string>(key, reader.GetString()!));
                    }

                    break;
                default: reader.Skip(); break;
            }
        }

        return new MessageProperties
        {
            PublishedQos = qos,
            PayloadFormatIndicator = format,
            ExpiresAt = expiresAt,
            ContentType = contentType,
            ResponseTopic = responseTopic,
            CorrelationData = correlation,
            UserProperties = user,
        };
    }

    private static void WriteData(Utf8JsonWriter writer, ReadOnlyMemory<byte> data, bool isJson)
    {
        if (data.IsEmpty)
        {
            return;
        }

        if (isJson)
        {
            writer.WritePropertyName("d"u8);
            writer.WriteRawValue(data.Span, skipInputValidation: true);
        }
        else
        {
            writer.WriteBase64String("b"u8, data.Span);
        }
    }

    private static void WriteOptional(Utf8JsonWriter writer, ReadOnlySpan<byte> name, string? value)
    {
        if (value is not null)
        {
            writer.WriteString(name, value);
        }
    }

    private static byte[] Write(Action<Utf8JsonWriter> fields)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            writer.WriteStartObject();
            fields(writer);
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    private static MessageFields ReadMessageFields(ref Utf8JsonReader reader, ReadOnlyMemory<byte> source)
    {
        var fields = new MessageFields();
        while (Next(ref reader) == JsonTokenType.PropertyName)
        {
            var name = reader.GetString();
            Next(ref reader);
            switch (name)
            {
                case "a": fields.App = reader.GetString(); break;
                case "c": fields.Channel = reader.GetString(); break;
                case "i": fields.Id = reader.GetString(); break;
                case "n": fields.Name = reader.GetString(); break;
                case "d": fields.Data = RawValue(ref reader, source); break;
                case "b":
                    fields.Data = reader.GetBytesFromBase64();
                    fields.DataIsJson = false;
                    break;
                case "u": fields.ClientId = reader.GetString(); break;
                case "cn": fields.ConnectionId = reader.GetString(); break;
                case "tp": fields.TraceParent = reader.GetString(); break;
                case "s": fields.Seq = reader.GetInt64(); break;
                case "t": fields.Timestamp = reader.GetInt64(); break;
                case "e": fields.Epoch = reader.GetString(); break;
                case "p": fields.PresenceAction = reader.GetString(); break;
                case "mp": fields.Properties = ReadProperties(ref reader); break;
                default: reader.Skip(); break;
            }
        }

        return fields;
    }

    // The bytes of the value the reader stands on (its first token), sliced from the source without a copy.
    private static ReadOnlyMemory<byte> RawValue(ref Utf8JsonReader reader, ReadOnlyMemory<byte> source)
    {
        var start = (int)reader.TokenStartIndex;
        if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray)
        {
            reader.Skip();
        }

        var end = (int)reader.BytesConsumed;
        return source[start..end];
    }

    private static JsonTokenType Next(ref Utf8JsonReader reader) =>
        reader.Read() ? reader.TokenType : throw new FormatException("a bus frame ends too early");

    private static void Expect(ref Utf8JsonReader reader, JsonTokenType type)
    {
        if (Next(ref reader) != type)
        {
            throw new FormatException($"a bus frame has {reader.TokenType} where {type} belongs");
        }
    }

    private static long ReadLong(ReadOnlySpan<byte> span, ref int offset)
    {
        var end = span[offset..].IndexOf((byte)':');
        if (end < 0 || !long.TryParse(span.Slice(offset, end), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value))
        {
            throw new FormatException("a sequenced message has a malformed prefix");
        }

        offset += end + 1;
        return value;
    }

    private static string ReadText(ReadOnlySpan<byte> span, ref int offset)
    {
        var end = span[offset..].IndexOf((byte)':');
        if (end < 0)
        {
            throw new FormatException("a sequenced message has a malformed prefix");
        }

        var text = Encoding.UTF8.GetString(span.Slice(offset, end));
        offset += end + 1;
        return text;
    }

    private sealed class MessageFields
    {
        public string? App;
        public string? Channel;
        public string? Id;
        public string? Name;
        public ReadOnlyMemory<byte> Data;
        public bool DataIsJson = true;
        public string? ClientId;
        public string? ConnectionId;
        public string? TraceParent;
        public long Seq;
        public long Timestamp;
        public string? Epoch;
        public string? PresenceAction;
        public MessageProperties? Properties;

        public RelayMessage ToMessage(long seq, long timestamp, string epoch, string? presenceAction) => new()
        {
            App = App ?? throw new FormatException("a bus message lacks its app"),
            Channel = Channel ?? throw new FormatException("a bus message lacks its channel"),
            Seq = seq,
            Epoch = epoch,
            Id = Id,
            Name = Name,
            Data = Data,
            DataIsJson = DataIsJson,
            ClientId = ClientId,
            ConnectionId = ConnectionId,
            TraceParent = TraceParent,
            Timestamp = timestamp,
            PresenceAction = presenceAction,
            Properties = Properties,
        };
    }
}

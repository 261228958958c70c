using System.Buffers;
using System.Text;
using System.Text.Json;
using Relay.Bus.Routing;
using Relay.Core.Messages;

namespace Relay.Functions.Hooks;

/// <summary>
/// The hooks' JSON (docs/functions.md): the request a before-publish hook gets, the answer it gives, and what an
/// after-publish hook gets. Message data is the JSON value as published, or a base64 string with <c>"encoding":"base64"</c>.
/// </summary>
internal static class HookJson
{
    /// <summary>Longest reject reason passed on to the publisher.</summary>
    public const int MaxReasonLength = 200;

    public static byte[] BeforePublish(PublishRequest request)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("type"u8, "beforePublish"u8);
            writer.WriteString("app"u8, request.App);
            writer.WriteString("channel"u8, request.Channel);
            WriteClientId(writer, request.ClientId);
            writer.WriteStartArray("messages"u8);
            foreach (var item in request.Items)
            {
                WriteItem(writer, item, seq: null);
            }

            writer.WriteEndArray();
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    public static byte[] AfterPublish(PublishRequest request, PublishReply reply, long timestamp)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("type"u8, "afterPublish"u8);
            writer.WriteString("app"u8, request.App);
            writer.WriteString("channel"u8, request.Channel);
            writer.WriteString("epoch"u8, reply.Epoch);
            WriteClientId(writer, request.ClientId);
            writer.WriteNumber("timestamp"u8, timestamp);
            writer.WriteStartArray("messages"u8);
            for (var i = 0; i < request.Items.Count; i++)
            {
                WriteItem(writer, request.Items[i], reply.Seqs[i]);
            }

            writer.WriteEndArray();
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    // One message of a publish request, with the seq it got (after publish) or without (before publish).
    private static void WriteItem(Utf8JsonWriter writer, PublishItem item, long? seq)
    {
        writer.WriteStartObject();
        if (seq is { } given)
        {
            writer.WriteNumber("seq"u8, given);
        }

        WriteIdNameData(writer, item.Id, item.Name, item.Data, item.DataIsJson);
        writer.WriteEndObject();
    }

    /// <summary>A sequenced message's fields (seq, epoch, id, name, data, clientId, timestamp), inside an object the caller opened.</summary>
    public static void WriteMessageFields(Utf8JsonWriter writer, RelayMessage message)
    {
        writer.WriteNumber("seq"u8, message.Seq);
        writer.WriteString("epoch"u8, message.Epoch);
        WriteIdNameData(writer, message.Id, message.Name, message.Data, message.DataIsJson);
        if (message.ClientId is not null)
        {
            writer.WriteString("clientId"u8, message.ClientId);
        }

        writer.WriteNumber("timestamp"u8, message.Timestamp);
    }

    private static void WriteIdNameData(Utf8JsonWriter writer, string? id, string? name, ReadOnlyMemory<byte> data, bool isJson)
    {
        if (id is not null)
        {
            writer.WriteString("id"u8, id);
        }

        if (name is not null)
        {
            writer.WriteString("name"u8, name);
        }

        WriteData(writer, data, isJson);
    }

    public static void WriteData(Utf8JsonWriter writer, ReadOnlyMemory<byte> data, bool isJson)
    {
        if (isJson)
        {
            writer.WritePropertyName("data"u8);
            writer.WriteRawValue(data.Span, skipInputValidation: true);
        }
        else
        {
            writer.WriteBase64String("data"u8, data.Span);
            writer.WriteString("encoding"u8, "base64"u8);
        }
    }

    /// <summary>Reads a before-publish answer; anything that is not one of the three documented answers is garbage.</summary>
    public static HookVerdict ReadAnswer(byte[] body, PublishRequest request)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("action"u8, out var action) || action.ValueKind != JsonValueKind.String)
            {
                return Garbage("no \"action\"");
            }

            if (action.ValueEquals("accept"u8))
            {
                return new HookVerdict(HookOutcome.Accept, null, null);
            }

            if (action.ValueEquals("reject"u8))
            {
                var reason = root.TryGetProperty("reason"u8, out var r) && r.ValueKind == JsonValueKind.String ? r.GetString()! : "no reason given";
                return new HookVerdict(HookOutcome.Reject, null, reason.Length > MaxReasonLength ? reason[..MaxReasonLength] : reason);
            }

            if (action.ValueEquals("transform"u8))
            {
                return ReadTransform(root, request);
            }

            return Garbage($"unknown action '{action.GetString()}'");
        }
        catch (JsonException e)
        {
            return Garbage("not JSON: " + e.Message);
        }
    }

    private static HookVerdict ReadTransform(JsonElement root, PublishRequest request)
    {
        if (!root.TryGetProperty("messages"u8, out var messages) || messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() != request.Items.Count)
        {
            return Garbage($"a transform needs \"messages\": an array of {request.Items.Count}");
        }

        var items = new PublishItem[request.Items.Count];
        var i = 0;
        foreach (var message in messages.EnumerateArray())
        {
            var item = request.Items[i];
            if (message.ValueKind != JsonValueKind.Object)
            {
                return Garbage("a transformed message is not an object");
            }

            var name = item.Name;
            if (message.TryGetProperty("name"u8, out var n))
            {
                if (n.ValueKind is not (JsonValueKind.String or JsonValueKind.Null))
                {
                    return Garbage("\"name\" is not a string");
                }

                name = n.GetString();
            }

            var data = item.Data;
            var isJson = item.DataIsJson;
            if (message.TryGetProperty("data"u8, out var d))
            {
                if (message.TryGetProperty("encoding"u8, out var encoding) && encoding.ValueEquals("base64"u8))
                {
                    if (d.ValueKind != JsonValueKind.String || !d.TryGetBytesFromBase64(out var bytes))
                    {
                        return Garbage("\"data\" with \"encoding\":\"base64\" is not base64");
                    }

                    (data, isJson) = (bytes, false);
                }
                else
                {
                    (data, isJson) = (Encoding.UTF8.GetBytes(d.GetRawText()), true);
                }
            }

            // The message id stays: dedupe and the publisher's ack refer to what was sent. So do MQTT 5 properties (a
            // hook sees and changes the name and data only).
            items[i++] = new PublishItem(name, data, isJson, item.Id) { Properties = item.Properties };
        }

        return new HookVerdict(HookOutcome.Transform, items, null);
    }

    private static void WriteClientId(Utf8JsonWriter writer, string? clientId)
    {
        if (clientId is null)
        {
            writer.WriteNull("clientId"u8);
        }
        else
        {
            writer.WriteString("clientId"u8, clientId);
        }
    }

    private static HookVerdict Garbage(string why) => HookVerdict.Failed(HookOutcome.Garbage, why);
}

using System.Buffers;
using System.Text.Json;
using Relay.Core.Messages;
using Relay.Functions.Delivery;
using Relay.Functions.Hooks;

namespace Relay.Functions.Webhooks;

/// <summary>
/// One webhook event. Made on fan-out's thread with what it already holds; its id and body are made by the sender, once,
/// and stay the same on every try.
/// </summary>
internal sealed class WebhookEvent(string type, string app, string channel, long timestamp, RelayMessage? message) : IOutbound
{
    private string? _id;
    private byte[]? _body;

    public string Type { get; } = type;

    public string Id => _id ??= "wh_" + Guid.NewGuid().ToString("N");

    public ReadOnlyMemory<byte> Body => _body ??= Write();

    // The message's data (shared with fan-out's deliveries while queued) and the body made from it.
    public int Size => (message?.Data.Length ?? 0) * 2 + 512;

    private byte[] Write()
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("id"u8, Id);
            writer.WriteString("type"u8, Type);
            writer.WriteString("app"u8, app);
            writer.WriteString("channel"u8, channel);
            writer.WriteNumber("timestamp"u8, timestamp);
            if (message is { PresenceAction: { } action })
            {
                writer.WriteStartObject("presence"u8);
                writer.WriteString("action"u8, action);
                writer.WriteString("clientId"u8, message.ClientId);
                writer.WriteString("connectionId"u8, message.ConnectionId);
                if (!message.Data.IsEmpty)
                {
                    HookJson.WriteData(writer, message.Data, message.DataIsJson);
                }

                writer.WriteEndObject();
            }
            else if (message is not null)
            {
                writer.WriteStartObject("message"u8);
                HookJson.WriteMessageFields(writer, message);
                writer.WriteEndObject();
            }

            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }
}

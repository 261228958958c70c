using System.Buffers;
using System.Text.Json;
using Relay.Core.Messages;

namespace Relay.Ingress.Pusher;

/// <summary>
/// The frames a Pusher client is sent: <c>{"event","channel","data"}</c> with data a JSON-encoded string (as Pusher
/// sends it), or an object for <c>pusher:error</c> (as pusher-js reads it).
/// </summary>
internal static class PusherFrames
{
    public const string MemberAdded = "pusher_internal:member_added";
    public const string MemberRemoved = "pusher_internal:member_removed";

    /// <summary>The event name of a Relay message published without one.</summary>
    public const string DefaultEventName = "message";

    /// <summary>A frame whose data is the given text (sent as a JSON string).</summary>
    public static byte[] Event(string name, string? channel, string? data)
    {
        var buffer = new ArrayBufferWriter<byte>(64 + (data?.Length ?? 0));
        using (var writer = new Utf8JsonWriter(buffer, PusherData.WriterOptions))
        {
            writer.WriteStartObject();
            writer.WriteString("event"u8, name);
            if (channel is not null)
            {
                writer.WriteString("channel"u8, channel);
            }

            if (data is not null)
            {
                writer.WriteString("data"u8, data);
            }

            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>A frame whose data is a JSON object, encoded as a string (<paramref name="build"/> writes its properties).</summary>
    public static byte[] Event<TState>(string name, string? channel, TState state, Action<Utf8JsonWriter, TState> build) =>
        Event(name, channel, Json(state, build));

    /// <summary>A JSON object's text (<paramref name="build"/> writes its properties).</summary>
    public static string Json<TState>(TState state, Action<Utf8JsonWriter, TState> build)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(buffer, PusherData.WriterOptions))
        {
            writer.WriteStartObject();
            build(writer, state);
            writer.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary><c>pusher:error</c> with <c>{"code","message"}</c> as an object (a null code for refusals Pusher gives none).</summary>
    public static byte[] Error(int? code, string message, string? channel = null)
    {
        var buffer = new ArrayBufferWriter<byte>(96 + message.Length);
        using (var writer = new Utf8JsonWriter(buffer, PusherData.WriterOptions))
        {
            writer.WriteStartObject();
            writer.WriteString("event"u8, "pusher:error"u8);
            if (channel is not null)
            {
                writer.WriteString("channel"u8, channel);
            }

            writer.WriteStartObject("data"u8);
            if (code is { } value)
            {
                writer.WriteNumber("code"u8, value);
            }
            else
            {
                writer.WriteNull("code"u8);
            }

            writer.WriteString("message"u8, message);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary><c>pusher:subscription_error</c> as soketi and pusher-js know it: <c>{"type","error","status"}</c>.</summary>
    public static byte[] SubscriptionError(string channel, string type, string error, int status)
    {
        var buffer = new ArrayBufferWriter<byte>(128 + error.Length);
        using (var writer = new Utf8JsonWriter(buffer, PusherData.WriterOptions))
        {
            writer.WriteStartObject();
            writer.WriteString("event"u8, "pusher:subscription_error"u8);
            writer.WriteString("channel"u8, channel);
            writer.WriteStartObject("data"u8);
            writer.WriteString("type"u8, type);
            writer.WriteString("error"u8, error);
            writer.WriteNumber("status"u8, status);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>
    /// The frame of a channel message (once per message for every Pusher subscriber): its name as the event (client events
    /// on presence channels carry the sender's <c>user_id</c>), or a presence enter/leave as <c>member_added</c>/<c>member_removed</c>.
    /// </summary>
    public static byte[] Message(RelayMessage message)
    {
        var channel = PusherChannels.ToPusher(message.Channel);
        var buffer = new ArrayBufferWriter<byte>(message.Data.Length + channel.Length + 96);
        using (var writer = new Utf8JsonWriter(buffer, PusherData.WriterOptions))
        {
            writer.WriteStartObject();
            if (message.PresenceAction is { } action)
            {
                var added = action == "enter";
                writer.WriteString("event"u8, added ? MemberAdded : MemberRemoved);
                writer.WriteString("channel"u8, channel);
                writer.WriteString("data"u8, Json(message, added
                    ? static (w, m) =>
                    {
                        w.WriteString("user_id"u8, m.ClientId);
                        w.WritePropertyName("user_info"u8);
                        if (m.DataIsJson && m.Data.Length > 0)
                        {
                            w.WriteRawValue(m.Data.Span, skipInputValidation: true);
                        }
                        else
                        {
                            w.WriteNullValue();
                        }
                    }
                    : static (w, m) => w.WriteString("user_id"u8, m.ClientId)));
            }
            else
            {
                var name = message.Name ?? DefaultEventName;
                writer.WriteString("event"u8, name);
                writer.WriteString("channel"u8, channel);
                PusherData.Write(writer, "data"u8, message.Data, message.DataIsJson);
                if (message.ClientId is { } user && name.StartsWith("client-", StringComparison.Ordinal)
                    && PusherChannels.KindOf(channel) == PusherChannelKind.Presence)
                {
                    writer.WriteString("user_id"u8, user);
                }
            }

            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }
}

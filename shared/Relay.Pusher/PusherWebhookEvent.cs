using System.Text.Json;

namespace Relay.Pusher;

/// <summary>One entry of a Pusher webhook's <c>events</c>: <c>name</c>, <c>channel</c> and what that event carries.</summary>
internal sealed record PusherWebhookEvent(string Name, string Channel, string? UserId = null, string? Event = null, string? Data = null, string? SocketId = null)
{
    public void Write(Utf8JsonWriter writer)
    {
        writer.WriteStartObject();
        writer.WriteString("name"u8, Name);
        writer.WriteString("channel"u8, Channel);
        if (Event is not null)
        {
            writer.WriteString("event"u8, Event);
            writer.WriteString("data"u8, Data);
            writer.WriteString("socket_id"u8, SocketId);
        }

        if (UserId is not null)
        {
            writer.WriteString("user_id"u8, UserId);
        }

        writer.WriteEndObject();
    }
}

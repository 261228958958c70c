using System.Text.Json;
using Relay.Core.Messages;
using Relay.Core.Protocol;

namespace Relay.Ingress;

/// <summary>The fields of history and presence answers, shared by the WebSocket <c>ok</c> replies and the HTTP API.</summary>
internal static class ReplyBodies
{
    public static void WriteHistory(Utf8JsonWriter writer, string channel, string epoch, IReadOnlyList<RelayMessage> messages)
    {
        writer.WriteString("channel"u8, channel);
        writer.WriteString("epoch"u8, epoch);
        writer.WriteStartArray("messages"u8);
        foreach (var message in messages)
        {
            ServerFrames.WriteMessage(writer, message, asPush: false);
        }

        writer.WriteEndArray();
    }

    public static void WriteMembers(Utf8JsonWriter writer, string channel, IReadOnlyList<RelayMessage> members)
    {
        writer.WriteString("channel"u8, channel);
        writer.WriteStartArray("members"u8);
        foreach (var member in members)
        {
            ServerFrames.WritePresence(writer, member, asPush: false);
        }

        writer.WriteEndArray();
    }
}

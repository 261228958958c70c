using System.Text.Json;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Core.Protocol;

namespace Relay.Ingress;

/// <summary>The fields of history and presence answers, shared by the WebSocket <c>ok</c> replies and the HTTP API.</summary>
internal static class ReplyBodies
{
    /// <summary>
    /// Writes a history page (oldest first). A page whose messages would pass <paramref name="pageBytes"/> stops
    /// early: it keeps the newest messages that fit (at least one) and says <c>"truncated":true</c>, and the client
    /// asks for the rest with <c>before</c> = the first message's seq, as it pages backwards anyway. Routing already cut
    /// the page to the data's bytes (<see cref="HistoryRequest.MaxBytes"/>); this cuts what that leaves to the bytes the
    /// messages take on the wire.
    /// </summary>
    public static void WriteHistory(Utf8JsonWriter writer, string channel, HistoryReply history, int pageBytes)
    {
        var messages = history.Messages;
        var first = messages.Count;
        var bytes = 0L;
        while (first > 0 && (first == messages.Count || bytes + EncodedBytesAtMost(messages[first - 1]) <= pageBytes))
        {
            first--;
            bytes += EncodedBytesAtMost(messages[first]);
        }

        writer.WriteString("channel"u8, channel);
        writer.WriteString("epoch"u8, history.Position.Epoch);
        writer.WriteStartArray("messages"u8);
        for (var i = first; i < messages.Count; i++)
        {
            ServerFrames.WriteMessage(writer, messages[i], asPush: false);
        }

        writer.WriteEndArray();
        if (first > 0 || history.Truncated)
        {
            writer.WriteBoolean("truncated"u8, true);
        }
    }

    /// <summary>
    /// At least as many bytes as <see cref="ServerFrames.WriteMessage"/> writes for <paramref name="message"/>, without
    /// encoding it: the payload as it goes out (raw JSON, or base64), every string escaped at worst (a control
    /// character takes six bytes), and room for the field names, numbers and punctuation.
    /// </summary>
    internal static long EncodedBytesAtMost(RelayMessage message)
    {
        const int FieldsAndNumbers = 160;
        var data = message.DataIsJson ? message.Data.Length : ((message.Data.Length + 2) / 3 * 4) + 20;
        var text = message.Channel.Length + message.Epoch.Length + (message.Id?.Length ?? 0) + (message.Name?.Length ?? 0) + (message.ClientId?.Length ?? 0);
        return FieldsAndNumbers + data + (6L * text);
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

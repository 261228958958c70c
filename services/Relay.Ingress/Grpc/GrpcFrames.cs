using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Core.Protocol;
using Relay.Grpc.V1;
using HistoryRequest = Relay.Grpc.V1.HistoryRequest;

namespace Relay.Ingress.Grpc;

/// <summary>Between Relay's messages and relay.v1's: payloads, pushes, history pages and presence members.</summary>
internal static class GrpcFrames
{
    /// <summary>History's default page (as the WebSocket's).</summary>
    public const int DefaultHistoryLimit = 100;

    /// <summary>History's largest page (as the WebSocket's).</summary>
    public const int MaxHistoryLimit = 1000;

    /// <summary>A payload as relay.v1 carries it: JSON as text, anything else as bytes.</summary>
    public static Data? ToData(ReadOnlyMemory<byte> data, bool isJson)
    {
        if (data.IsEmpty)
        {
            return null;
        }

        return isJson ? new Data { Json = Encoding.UTF8.GetString(data.Span) } : new Data { Binary = ByteString.CopyFrom(data.Span) };
    }

    /// <summary>
    /// A client's payload as Relay keeps it: JSON text checked to be one JSON value and compacted as the WebSocket's
    /// is (so SSE and WebSocket subscribers get it unchanged), bytes kept exactly (they reach JSON clients base64).
    /// </summary>
    public static (byte[] Bytes, bool IsJson) FromData(Data? data, string field)
    {
        switch (data?.KindCase)
        {
            case Data.KindOneofCase.Json:
                var json = Encoding.UTF8.GetBytes(data.Json);
                if (!JsonPayload.IsOneValue(json))
                {
                    throw new RelayException(RelayError.BadRequest($"field '{field}.json' is not one valid JSON value"));
                }

                return (CompactJson.Copy(json), true);
            case Data.KindOneofCase.Binary:
                return (data.Binary.ToByteArray(), false);
            default:
                throw new RelayException(RelayError.BadRequest($"missing field '{field}': set json or binary"));
        }
    }

    public static Message ToMessage(RelayMessage message) => new()
    {
        Channel = message.Channel,
        Seq = message.Seq,
        Epoch = message.Epoch,
        Id = message.Id ?? string.Empty,
        Name = message.Name ?? string.Empty,
        Data = ToData(message.Data, message.DataIsJson),
        ClientId = message.ClientId ?? string.Empty,
        Timestamp = message.Timestamp,
    };

    /// <summary>A live push: a message, or a presence event.</summary>
    public static ServerFrame ToPush(RelayMessage message) => message.PresenceAction is { } action
        ? new ServerFrame
        {
            PresenceEvent = new PresenceEvent
            {
                Channel = message.Channel,
                Action = action,
                ClientId = message.ClientId ?? string.Empty,
                ConnectionId = message.ConnectionId ?? string.Empty,
                Data = ToData(message.Data, true),
            },
        }
        : new ServerFrame { Message = ToMessage(message) };

    /// <summary>
    /// A history page, oldest first, cut as the WebSocket's is: the newest messages that fit in
    /// <paramref name="pageBytes"/> (at least one), with truncated set when some were left for <c>before</c>.
    /// </summary>
    public static HistoryResult ToHistory(string channel, HistoryReply history, int pageBytes)
    {
        var messages = history.Messages;
        var first = messages.Count;
        var bytes = 0L;
        while (first > 0 && (first == messages.Count || bytes + ReplyBodies.EncodedBytesAtMost(messages[first - 1]) <= pageBytes))
        {
            first--;
            bytes += ReplyBodies.EncodedBytesAtMost(messages[first]);
        }

        var result = new HistoryResult { Channel = channel, Epoch = history.Position.Epoch, Truncated = first > 0 || history.Truncated };
        for (var i = first; i < messages.Count; i++)
        {
            result.Messages.Add(ToMessage(messages[i]));
        }

        return result;
    }

    public static PresenceResult ToMembers(string channel, IReadOnlyList<RelayMessage> members)
    {
        var result = new PresenceResult { Channel = channel };
        foreach (var member in members)
        {
            result.Members.Add(new PresenceMember
            {
                ClientId = member.ClientId ?? string.Empty,
                ConnectionId = member.ConnectionId ?? string.Empty,
                Data = ToData(member.Data, true),
            });
        }

        return result;
    }

    /// <summary>The history limit asked for, or the protocol's error.</summary>
    public static int HistoryLimit(HistoryRequest request)
    {
        var limit = request.HasLimit ? request.Limit : DefaultHistoryLimit;
        return limit is >= 1 and <= MaxHistoryLimit
            ? limit
            : throw new RelayException(RelayError.BadRequest($"field 'limit' must be from 1 to {MaxHistoryLimit}"));
    }

    /// <summary>The idempotency id, checked as the WebSocket's (up to 64 characters); null when none.</summary>
    public static string? IdOf(PublishMessage message) => message.Id.Length switch
    {
        0 => null,
        <= ClientFrameParser.MaxIdLength => message.Id,
        _ => throw new RelayException(RelayError.BadRequest($"field 'id' must be at most {ClientFrameParser.MaxIdLength} characters")),
    };
}

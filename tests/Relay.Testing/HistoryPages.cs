namespace Relay.Testing;

/// <summary>Reads a channel's whole history over a realtime connection.</summary>
public static class HistoryPages
{
    /// <summary>
    /// The channel's history, oldest first, read backwards 1,000 messages a page (bounded: it holds what was published),
    /// with each message's <c>data</c> as a string. Every page must be answered <c>ok</c>.
    /// </summary>
    public static async Task<(string Epoch, List<(long Seq, string Data)> Messages)> ReadAllAsync(TestSocket reader, string channel)
    {
        ArgumentNullException.ThrowIfNull(reader);
        var messages = new List<(long Seq, string Data)>();
        long? before = null;
        var epoch = "";
        for (var page = 0; page < 10_000; page++)
        {
            var request = new Dictionary<string, object?> { ["type"] = "history", ["channel"] = channel, ["limit"] = 1000 };
            if (before is { } b)
            {
                request["before"] = b;
            }

            var reply = await reader.RequestAsync(request).ConfigureAwait(false);
            if (reply.GetProperty("type").GetString() != "ok")
            {
                throw new InvalidOperationException("a history page was refused: " + reply.GetRawText());
            }

            epoch = reply.GetProperty("epoch").GetString()!;
            var items = reply.GetProperty("messages").EnumerateArray().Select(static m => (m.GetProperty("seq").GetInt64(), m.GetProperty("data").GetString()!)).ToList();
            if (items.Count == 0)
            {
                break;
            }

            messages.InsertRange(0, items);
            before = items[0].Item1;
            if (before == 1)
            {
                break;
            }
        }

        return (epoch, messages);
    }
}

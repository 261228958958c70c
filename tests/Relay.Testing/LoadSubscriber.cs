using System.Globalization;
using System.Net.WebSockets;
using System.Text.Json;

namespace Relay.Testing;

/// <summary>
/// A subscriber reading what a <see cref="PublishLoad"/> publishes, per channel, as a careful client does: when the server
/// disconnects it (a slow consumer, a history read refused while Redis moved things), it connects again and subscribes to
/// each channel with <c>since</c> (its last seq there in the epoch it started in), trying up to ten times. Each message's
/// data is the publish's id. Thread-safe reads while it runs.
/// </summary>
public sealed class LoadSubscriber(RelayServer server, IReadOnlyDictionary<string, string> epochs, Action<string> log)
{
    private const int SubscribeAttempts = 10;

    private readonly Dictionary<string, List<(long Seq, string Id)>> _received = epochs.Keys.ToDictionary(static c => c, static _ => new List<(long Seq, string Id)>(), StringComparer.Ordinal);
    private readonly List<string> _disconnects = [];

    /// <summary>What the channel's subscriber got so far, in the order it came.</summary>
    public List<(long Seq, string Id)> Received(string channel)
    {
        lock (_received)
        {
            return [.. _received[channel]];
        }
    }

    /// <summary>The last seq the subscriber got on the channel (0: none yet).</summary>
    public long LastSeq(string channel)
    {
        lock (_received)
        {
            return _received[channel] is { Count: > 0 } got ? got[^1].Seq : 0;
        }
    }

    /// <summary>The <c>disconnect</c> frames the server sent it.</summary>
    public List<string> Disconnects
    {
        get
        {
            lock (_disconnects)
            {
                return [.. _disconnects];
            }
        }
    }

    /// <summary>Reads on <paramref name="first"/> (already subscribed to every channel) until <paramref name="stop"/>.</summary>
    public async Task ReadAsync(TestSocket first, CancellationToken stop)
    {
        var subscriber = first;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                JsonElement frame;
                try
                {
                    frame = await subscriber.ReceiveAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    continue;
                }
                catch (WebSocketException e)
                {
                    log($"subscriber disconnected ({e.Message}); subscribing again with since");
                    if (!ReferenceEquals(subscriber, first))
                    {
                        await subscriber.DisposeAsync().ConfigureAwait(false);
                    }

                    subscriber = await SubscribeAgainAsync().ConfigureAwait(false);
                    continue;
                }

                var type = frame.GetProperty("type").GetString();
                if (type == "disconnect")
                {
                    log("subscriber got " + frame.GetRawText());
                    lock (_disconnects)
                    {
                        _disconnects.Add(frame.GetRawText());
                    }
                }
                else if (type == "message")
                {
                    lock (_received)
                    {
                        _received[frame.GetProperty("channel").GetString()!].Add((frame.GetProperty("seq").GetInt64(), frame.GetProperty("data").GetString()!));
                    }
                }
            }
        }
        finally
        {
            if (!ReferenceEquals(subscriber, first))
            {
                await subscriber.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Checks what the subscriber got on a channel: seqs only ever increasing (each once, in order), and every seq of
    /// <paramref name="acknowledged"/> among them. Returns what it got.
    /// </summary>
    public List<(long Seq, string Id)> CheckInOrder(string channel, IEnumerable<PublishLoad.Ack> acknowledged)
    {
        var got = Received(channel);
        for (var i = 1; i < got.Count; i++)
        {
            if (got[i].Seq <= got[i - 1].Seq)
            {
                throw new InvalidOperationException($"{channel}: the subscriber got seq {got[i].Seq} after {got[i - 1].Seq}");
            }
        }

        var seqs = got.Select(static r => r.Seq).ToHashSet();
        foreach (var ack in acknowledged.Where(a => a.Channel == channel))
        {
            if (!seqs.Contains(ack.Seq))
            {
                throw new InvalidOperationException($"{channel}: the subscriber never got seq {ack.Seq} ({ack.Id})");
            }
        }

        return got;
    }

    // A new connection subscribed to every channel with since; a try that fails (the server busy while Redis moves
    // things) is made again, a bounded number of times.
    private async Task<TestSocket> SubscribeAgainAsync()
    {
        for (var attempt = 1; ; attempt++)
        {
            var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key, "sub")).ConfigureAwait(false);
            try
            {
                foreach (var (channel, epoch) in epochs)
                {
                    var again = await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel, ["since"] = new { epoch, seq = LastSeq(channel) } }).ConfigureAwait(false);
                    log("resubscribed: " + again.GetRawText());
                    if (again.GetProperty("type").GetString() != "ok")
                    {
                        throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"subscribing again to {channel} was refused: {again.GetRawText()}"));
                    }
                }

                return subscriber;
            }
            catch (Exception e) when (attempt < SubscribeAttempts && e is TimeoutException or WebSocketException or InvalidOperationException)
            {
                log($"subscribing again failed ({e.Message}); once more");
                await subscriber.DisposeAsync().ConfigureAwait(false);
            }
        }
    }
}

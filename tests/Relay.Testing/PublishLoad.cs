using System.Diagnostics;
using System.Globalization;

namespace Relay.Testing;

/// <summary>
/// Publishers keeping channels busy while a test breaks something under them (a Redis master killed, slots moved): each
/// publisher is one realtime connection with up to <see cref="Window"/> publishes in flight, at most
/// <see cref="PerSecond"/> a second when set, over the channels in turn, each with an id that is also its data. Every
/// acknowledgement is recorded with its seq and time on <see cref="Clock"/>; a publish answered with an error is counted
/// by its message and not sent again, so its id stays unacknowledged. Thread-safe: the publishers share one instance.
/// </summary>
public sealed class PublishLoad(RelayServer server, IReadOnlyList<string> channels)
{
    private readonly List<Ack> _acknowledged = [];
    private readonly Dictionary<string, int> _refusals = new(StringComparer.Ordinal);

    /// <summary>One acknowledged publish: its channel, id, the seq it was given and when the acknowledgement came.</summary>
    public sealed record Ack(string Channel, string Id, long Seq, TimeSpan At);

    /// <summary>Publishes each publisher keeps in flight at most.</summary>
    public int Window { get; init; } = 64;

    /// <summary>Publishes a second each publisher sends at most (0: as fast as the window allows).</summary>
    public int PerSecond { get; init; }

    /// <summary>Characters of each publish's data at least: its id, then dots up to this length (0: the id alone).</summary>
    public int DataLength { get; init; }

    /// <summary>The data a publish with <paramref name="id"/> carries: the id, padded to <see cref="DataLength"/>.</summary>
    public string DataOf(string id) => DataLength > id.Length ? id + new string('.', DataLength - id.Length) : id;

    /// <summary>Started with the load; the times of <see cref="Ack"/>s are on it.</summary>
    public Stopwatch Clock { get; } = Stopwatch.StartNew();

    /// <summary>The acknowledged publishes so far, in the order their acknowledgements came.</summary>
    public List<Ack> Acknowledged
    {
        get
        {
            lock (_acknowledged)
            {
                return [.. _acknowledged];
            }
        }
    }

    /// <summary>How many acknowledged publishes match.</summary>
    public int CountAcknowledged(Func<Ack, bool> match)
    {
        lock (_acknowledged)
        {
            return _acknowledged.Count(match);
        }
    }

    /// <summary>The refusals so far: how many times each error message (its first 200 characters) came.</summary>
    public Dictionary<string, int> Refusals
    {
        get
        {
            lock (_refusals)
            {
                return new Dictionary<string, int>(_refusals, StringComparer.Ordinal);
            }
        }
    }

    /// <summary>Records a publish acknowledged outside the load (a test's last marker), so the checks cover it too.</summary>
    public void Add(Ack ack)
    {
        lock (_acknowledged)
        {
            _acknowledged.Add(ack);
        }
    }

    /// <summary>Starts <paramref name="publishers"/> publishers; each stops sending at <paramref name="stop"/> and ends once its last publish is answered.</summary>
    public Task[] Start(int publishers, CancellationToken stop) =>
        [.. Enumerable.Range(0, publishers).Select(p => Task.Run(() => PublishAsync(p, stop), CancellationToken.None))];

    private async Task PublishAsync(int publisher, CancellationToken stop)
    {
        await using var socket = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key, "pub" + publisher.ToString(CultureInfo.InvariantCulture))).ConfigureAwait(false);
        var inFlight = new Dictionary<int, (string Channel, string Id)>();
        var next = 1;
        while (!stop.IsCancellationRequested || inFlight.Count > 0)
        {
            while (!stop.IsCancellationRequested && inFlight.Count < Window && (PerSecond == 0 || next <= Clock.ElapsedMilliseconds * PerSecond / 1000))
            {
                var channel = channels[next % channels.Count];
                var id = $"p{publisher}-{next}";
                inFlight[next] = (channel, id);
                await socket.SendAsync(new Dictionary<string, object?> { ["type"] = "publish", ["channel"] = channel, ["id"] = id, ["data"] = DataOf(id), ["ref"] = next }).ConfigureAwait(false);
                next++;
            }

            if (inFlight.Count == 0)
            {
                await Task.Delay(5, CancellationToken.None).ConfigureAwait(false);
                continue;
            }

            // The server answers every publish within its request timeout, with an error at worst.
            var reply = await socket.ReceiveAsync(TimeSpan.FromSeconds(20)).ConfigureAwait(false);
            var reference = reply.GetProperty("ref").GetInt32();
            if (!inFlight.Remove(reference, out var sent))
            {
                throw new InvalidOperationException("a reply to no publish: " + reply.GetRawText());
            }

            if (reply.GetProperty("type").GetString() == "ok")
            {
                Add(new Ack(sent.Channel, sent.Id, reply.GetProperty("seq").GetInt64(), Clock.Elapsed));
            }
            else
            {
                var error = reply.TryGetProperty("message", out var message) ? message.GetString() ?? "" : reply.GetRawText();
                lock (_refusals)
                {
                    var reason = error.Length > 200 ? error[..200] : error;
                    _refusals[reason] = _refusals.GetValueOrDefault(reason) + 1;
                }
            }
        }
    }

    /// <summary>
    /// Checks a channel's whole history (<see cref="HistoryPages.ReadAllAsync"/>) against the load: gapless from seq 1,
    /// and every acknowledged publish on the channel there under the seq it was acknowledged with. Returns seq → data.
    /// </summary>
    public Dictionary<long, string> CheckHistory(string channel, List<(long Seq, string Data)> history)
    {
        ArgumentNullException.ThrowIfNull(history);
        for (var i = 0; i < history.Count; i++)
        {
            if (history[i].Seq != i + 1)
            {
                throw new InvalidOperationException($"{channel}: the history has seq {history[i].Seq} at position {i + 1}; it is not gapless from 1");
            }
        }

        var dataAt = history.ToDictionary(static m => m.Seq, static m => m.Data);
        foreach (var ack in Acknowledged.Where(a => a.Channel == channel))
        {
            if (!dataAt.TryGetValue(ack.Seq, out var data) || data != DataOf(ack.Id))
            {
                throw new InvalidOperationException($"{channel}: {ack.Id} was acknowledged with seq {ack.Seq}; the history has {data ?? "nothing"} there");
            }
        }

        return dataAt;
    }
}

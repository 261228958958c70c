using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Relay.Bench.Load;
using Relay.Bench.Targets;

namespace Relay.Bench.Scenarios;

/// <summary>
/// A client process of the soak run. It opens its share of the connections (each subscribed to one of the channels),
/// says <c>ready</c>, and follows the lines its parent writes to its standard input:
/// <c>churn</c> starts closing <see cref="SoakSpec.ChurnPerSecond"/> of them a second (one with a close frame, the next
/// reset with no close frame) and reconnecting each at once with <c>since</c>; <c>final N0 N1 …</c> (each channel's
/// acknowledged message count) stops the churn, waits for every connection to hold its channel's last message, and
/// answers <c>result {json}</c>. A connection the server closes is resumed at once, as a client would. Every 10 s it
/// writes <c>status {json}</c>. When standard input closes it closes the connections and exits.
/// </summary>
internal sealed class SoakClient
{
    private static readonly TimeSpan StatusEvery = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan CatchUpTimeout = TimeSpan.FromSeconds(60);

    private readonly Target _target;
    private readonly Uri _uri;
    private readonly int _child;
    private readonly SoakTracker[] _trackers;
    private readonly BenchSocket?[] _sockets;
    private readonly int[] _busy;
    private readonly Lock _output = new();
    private long _reconnects;
    private long _cleanCloses;
    private long _resets;
    private long _reconnectFailures;
    private long _notRecovered;
    private long _cutByServer;
    private long _noEpoch;
    private volatile bool _closing;

    private SoakClient(Target target, Uri uri, int child, int count, int firstIndex, int channels)
    {
        _target = target;
        _uri = uri;
        _child = child;
        _trackers = new SoakTracker[count];
        for (var i = 0; i < count; i++)
        {
            _trackers[i] = new SoakTracker((firstIndex + i) % channels);
        }

        _sockets = new BenchSocket?[count];
        _busy = new int[count];
    }

    /// <summary>The channel a soak connection subscribes to.</summary>
    public static string ChannelName(int channel) => $"soak:{channel}";

    public static async Task<int> RunAsync(Target target, Uri uri, int count, int child, int firstIndex, int channels, double churnPerSecond)
    {
        var client = new SoakClient(target, uri, child, count, firstIndex, channels);
        var progress = new Progress($"soak child {child}");
        var sockets = await Fleet.ConnectAsync(target, uri, count, i => ChannelName(client._trackers[i].Channel), i => client.ScannerFor(i, 0), progress, SourceOffset(child)).ConfigureAwait(false);
        for (var i = 0; i < count; i++)
        {
            client.Install(i, sockets[i]);
        }

        client.Say("ready");

        using var stop = new CancellationTokenSource();
        var churn = Task.CompletedTask;
        var status = client.StatusLoopAsync(stop.Token);
        while (await Console.In.ReadLineAsync().ConfigureAwait(false) is { } line)
        {
            if (line == "churn")
            {
                churn = client.ChurnLoopAsync(churnPerSecond, stop.Token);
            }
            else if (line.StartsWith("final ", StringComparison.Ordinal))
            {
                await stop.CancelAsync().ConfigureAwait(false);
                await churn.ConfigureAwait(false);
                var finals = line[6..].Split(' ').Select(n => long.Parse(n, CultureInfo.InvariantCulture)).ToArray();
                client.Say("result " + JsonSerializer.Serialize(await client.CatchUpAsync(finals).ConfigureAwait(false)));
            }
        }

        client._closing = true;
        await stop.CancelAsync().ConfigureAwait(false);
        await churn.ConfigureAwait(false);
        await status.ConfigureAwait(false);
        await Fleet.CloseAsync(client._sockets).ConfigureAwait(false);
        return 0;
    }

    // Each client process takes its own 127.0.0.x addresses (four apart, as the idle scenario's do), the first two for
    // the connections it opens at the start and the next two for reconnects, so closed ports waiting out TIME_WAIT never
    // crowd the ones in use.
    private static int SourceOffset(int child) => 1 + (child * 4);

    private StreamScanner ScannerFor(int index, int generation)
    {
        var tracker = _trackers[index];

        // Every subscribe without since (the first, and a resume without an epoch) is answered recovered: false too.
        var plain = generation == 0 ? 1 : 0;
        StreamScanner? scanner = null;
        scanner = new StreamScanner(_target.Tokens, stamp => tracker.OnStamp(generation, stamp, scanner!.NotRecovered > plain), trackEpochs: true);
        return scanner;
    }

    /// <summary>Makes <paramref name="socket"/> connection <paramref name="index"/>'s, resumed at once if the server closes it.</summary>
    private void Install(int index, BenchSocket socket)
    {
        Volatile.Write(ref _sockets[index], socket);
        _ = socket.Completion.ContinueWith(
            (_, state) =>
            {
                var (client, i, closed) = ((SoakClient, int, BenchSocket))state!;
                if (!client._closing && ReferenceEquals(Volatile.Read(ref client._sockets[i]), closed) && Interlocked.CompareExchange(ref client._busy[i], 1, 0) == 0)
                {
                    _ = client.ReconnectAsync(i, abrupt: true);
                }
            },
            (this, index, socket),
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
    }

    private void Say(string line)
    {
        lock (_output)
        {
            Console.Out.WriteLine(line);
            Console.Out.Flush();
        }
    }

    private async Task StatusLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                Say("status " + JsonSerializer.Serialize(Status()));
                await Task.Delay(StatusEvery, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private SoakClientStatus Status()
    {
        var held = 0;
        long deliveries = 0;
        for (var i = 0; i < _sockets.Length; i++)
        {
            if (_sockets[i] is { Completion.IsCompleted: false })
            {
                held++;
            }

            deliveries += _trackers[i].Deliveries;
        }

        return new SoakClientStatus(held, Interlocked.Read(ref _reconnects), deliveries);
    }

    private async Task ChurnLoopAsync(double perSecond, CancellationToken cancellationToken)
    {
        var running = new List<Task>();
        var random = new Random(_child);
        var owed = 0.0;
        var abrupt = false;
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                running.RemoveAll(static t => t.IsCompleted);
                owed += perSecond;
                for (; owed >= 1; owed--)
                {
                    var index = random.Next(_sockets.Length);
                    if (Interlocked.CompareExchange(ref _busy[index], 1, 0) == 0)
                    {
                        abrupt = !abrupt;
                        running.Add(ReconnectAsync(index, abrupt));
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
        }

        await Task.WhenAll(running).ConfigureAwait(false);
    }

    /// <summary>Closes connection <paramref name="index"/> (reset or with a close frame) and resumes it on a new socket.</summary>
    private async Task ReconnectAsync(int index, bool abrupt)
    {
        var tracker = _trackers[index];
        var old = _sockets[index];
        try
        {
            // The server closed it (the churn came to it first, or its watch did).
            var cut = old is not null && old.Completion.IsCompleted;
            if (cut)
            {
                Interlocked.Increment(ref _cutByServer);
            }

            tracker.Epoch = old?.Scanner.Epoch ?? tracker.Epoch;
            Interlocked.Add(ref _notRecovered, old?.Scanner.NotRecovered ?? 0);
            var (generation, since) = tracker.Cut();
            if (old is not null)
            {
                if (cut)
                {
                    old.Abort();
                }
                else if (abrupt)
                {
                    old.Abort();
                    Interlocked.Increment(ref _resets);
                }
                else
                {
                    await old.CloseAsync(BenchEnvironment.RequestTimeout).ConfigureAwait(false);
                    Interlocked.Increment(ref _cleanCloses);
                }
            }

            Volatile.Write(ref _sockets[index], null);
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    var resumed = await ResumeAsync(index, generation, since, tracker.Epoch).ConfigureAwait(false);
                    if (_closing)
                    {
                        resumed.Abort();
                        return;
                    }

                    Install(index, resumed);
                    Interlocked.Increment(ref _reconnects);
                    return;
                }
                catch (Exception ex) when (attempt < 3 && ex is IOException or TimeoutException or InvalidOperationException or System.Net.Sockets.SocketException)
                {
                    await Task.Delay(TimeSpan.FromSeconds(attempt)).ConfigureAwait(false);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or TimeoutException or InvalidOperationException or System.Net.Sockets.SocketException)
        {
            Interlocked.Increment(ref _reconnectFailures);
            Say($"connection {index} did not come back: {ex.Message}");
        }
        finally
        {
            Volatile.Write(ref _busy[index], 0);
        }
    }

    private async Task<BenchSocket> ResumeAsync(int index, int generation, long since, string? epoch)
    {
        var source = IPAddress.Parse($"127.0.0.{10 + SourceOffset(_child) + 2 + (index / Fleet.PerSourceAddress)}");
        var socket = await BenchSocket.ConnectAsync(_uri, ScannerFor(index, generation), source, CancellationToken.None).ConfigureAwait(false);
        try
        {
            await _target.HandshakeAsync(socket).ConfigureAwait(false);
            var channel = ChannelName(_trackers[index].Channel);
            if (epoch is null)
            {
                // No reply named the epoch yet (it came split across reads): a plain subscribe, and the gap shows as missed.
                Interlocked.Increment(ref _noEpoch);
                await _target.SubscribeAsync(socket, channel).ConfigureAwait(false);
            }
            else
            {
                var request = $"{{\"type\":\"subscribe\",\"channel\":\"{channel}\",\"since\":{{\"epoch\":\"{epoch}\",\"seq\":{since}}},\"ref\":1}}";
                await socket.SendTextAsync(Encoding.UTF8.GetBytes(request)).ConfigureAwait(false);
                await socket.Scanner.WaitAsync(() => socket.Scanner.Acks >= 1, BenchEnvironment.RequestTimeout, $"subscribe {channel} since {since}").ConfigureAwait(false);
            }

            return socket;
        }
        catch
        {
            socket.Abort();
            throw;
        }
    }

    /// <summary>Waits until every connection holds its channel's last acknowledged message, then counts.</summary>
    private async Task<SoakClientReport> CatchUpAsync(long[] finals)
    {
        var deadline = DateTime.UtcNow + CatchUpTimeout;
        while (DateTime.UtcNow < deadline && !CaughtUp(finals))
        {
            await Task.Delay(250).ConfigureAwait(false);
        }

        // A plain subscribe is answered recovered: false too (the first of each connection, and a resume without an epoch).
        long deliveries = 0, expected = 0, lost = 0, missed = 0, skipped = 0, duplicates = 0;
        var notRecovered = Interlocked.Read(ref _notRecovered) - _trackers.Length - Interlocked.Read(ref _noEpoch);
        var held = 0;
        for (var i = 0; i < _trackers.Length; i++)
        {
            var tracker = _trackers[i];
            deliveries += tracker.Deliveries;
            missed += tracker.Missed;
            skipped += tracker.Skipped;
            duplicates += tracker.Duplicates;
            notRecovered += _sockets[i]?.Scanner.NotRecovered ?? 0;
            if (_sockets[i] is { Completion.IsCompleted: false })
            {
                held++;
                expected += finals[tracker.Channel];
                lost += Math.Max(0, finals[tracker.Channel] - tracker.Last);
            }
        }

        return new SoakClientReport(
            held,
            deliveries,
            expected,
            lost,
            missed,
            skipped,
            duplicates,
            Interlocked.Read(ref _reconnects),
            Interlocked.Read(ref _cleanCloses),
            Interlocked.Read(ref _resets),
            Interlocked.Read(ref _reconnectFailures),
            notRecovered,
            Interlocked.Read(ref _cutByServer),
            Interlocked.Read(ref _noEpoch));
    }

    private bool CaughtUp(long[] finals)
    {
        for (var i = 0; i < _trackers.Length; i++)
        {
            if (_sockets[i] is { Completion.IsCompleted: false } && _trackers[i].Last < finals[_trackers[i].Channel])
            {
                return false;
            }
        }

        return true;
    }
}

/// <summary>What a soak client process holds now (its <c>status</c> line).</summary>
internal sealed record SoakClientStatus(int Held, long Reconnects, long Deliveries);

/// <summary>
/// A soak client's counts at the end: connections held; deliveries received (recoveries included) and expected (each
/// held connection's channel total); lost (short of the channel's last acknowledged message at the end), missed (a gap
/// in the numbers), skipped (a gap after the server said <c>recovered: false</c>), duplicates; its reconnects and how they closed; failures; <c>since</c> answered
/// <c>recovered: false</c>; connections the server closed; resumes without an epoch.
/// </summary>
internal sealed record SoakClientReport(
    int Held,
    long Deliveries,
    long Expected,
    long Lost,
    long Missed,
    long Skipped,
    long Duplicates,
    long Reconnects,
    long CleanCloses,
    long Resets,
    long ReconnectFailures,
    long NotRecovered,
    long CutByServer,
    long NoEpoch);

using System.Diagnostics;
using Relay.Bench.Load;
using Relay.Bench.Targets;

namespace Relay.Bench.Scenarios;

/// <summary>
/// The soak run's steady publish load: one connection publishing <c>rate</c> messages a second round-robin over the
/// channels, each stamped with its number on its channel (1, 2, 3, …: the channel's seq, since nobody else publishes),
/// every one acknowledged. At most <see cref="Window"/> wait for their acknowledgement; a server that falls further
/// behind is offered less, and the run reports the rate it got.
/// </summary>
internal sealed class SoakPublisher(BenchSocket socket, IReadOnlyList<PublishTemplate> templates, int payload, int rate) : IAsyncDisposable
{
    public const int Window = 1000;

    private long _published;

    public long Published => Volatile.Read(ref _published);

    public long Acknowledged => socket.Scanner.Acks;

    public static async Task<SoakPublisher> ConnectAsync(Target target, Uri uri, int channels, int payload, int rate)
    {
        var socket = await BenchSocket.ConnectAsync(uri, new StreamScanner(target.Tokens), null, CancellationToken.None).ConfigureAwait(false);
        await target.HandshakeAsync(socket).ConfigureAwait(false);
        var templates = Enumerable.Range(0, channels).Select(c => target.PublishTemplate(SoakClient.ChannelName(c), payload, wantAck: true)).ToList();
        return new SoakPublisher(socket, templates, payload, rate);
    }

    /// <summary>Publishes at the rate until <paramref name="cancellationToken"/> is cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(50));
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                var due = (long)(rate * clock.Elapsed.TotalSeconds);
                while (_published < due && _published - Acknowledged < Window)
                {
                    await PublishAsync(_published).ConfigureAwait(false);
                    Volatile.Write(ref _published, _published + 1);
                }

                if (socket.Scanner.FirstError is { } error)
                {
                    throw new InvalidOperationException($"the server refused a soak publish: {error}");
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Waits until every publish is acknowledged.</summary>
    public Task DrainAsync() =>
        socket.Scanner.WaitAsync(() => socket.Scanner.Acks >= Published, TimeSpan.FromSeconds(60), $"the last of {Published:N0} publishes");

    /// <summary>Acknowledged messages per channel (what each subscriber of it must end up with).</summary>
    public long[] Finals()
    {
        var finals = new long[templates.Count];
        for (var c = 0; c < finals.Length; c++)
        {
            finals[c] = (Published / finals.Length) + (c < Published % finals.Length ? 1 : 0);
        }

        return finals;
    }

    public ValueTask DisposeAsync() => socket.DisposeAsync();

    private Task PublishAsync(long index)
    {
        var template = templates[(int)(index % templates.Count)];
        var frame = (byte[])template.Bytes.Clone();
        Stamp.Write(frame.AsSpan(template.StampOffset), payload, (index / templates.Count) + 1);
        return socket.SendTextAsync(frame);
    }
}

using System.Net;
using Relay.Bench.Load;
using Relay.Bench.Targets;

namespace Relay.Bench.Scenarios;

/// <summary>Opens many subscribed connections, a few at a time, spreading them over 127.0.0.x source addresses.</summary>
internal static class Fleet
{
    /// <summary>Connections per source address: well inside the ~28,000 ephemeral ports Linux gives each address.</summary>
    public const int PerSourceAddress = 10_000;

    public static async Task<BenchSocket[]> ConnectAsync(
        Target target,
        Uri uri,
        int count,
        Func<int, string> channelOf,
        Func<int, StreamScanner> scannerOf,
        Progress progress,
        int sourceOffset = 0)
    {
        var sockets = new BenchSocket[count];
        var done = 0L;
        await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = 32 }, async (i, cancellationToken) =>
        {
            var source = count > PerSourceAddress || sourceOffset > 0 ? IPAddress.Parse($"127.0.0.{10 + sourceOffset + (i / PerSourceAddress)}") : null;
            var socket = await BenchSocket.ConnectAsync(uri, scannerOf(i), source, cancellationToken).ConfigureAwait(false);
            await target.HandshakeAsync(socket).ConfigureAwait(false);
            await target.SubscribeAsync(socket, channelOf(i)).ConfigureAwait(false);
            sockets[i] = socket;
            progress.Count("subscribed", Interlocked.Increment(ref done), count);
        }).ConfigureAwait(false);
        return sockets;
    }

    public static async Task CloseAsync(IEnumerable<BenchSocket?> sockets)
    {
        foreach (var socket in sockets)
        {
            if (socket is not null)
            {
                await socket.DisposeAsync().ConfigureAwait(false);
            }
        }
    }
}

using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;
using Relay.Core.Protocol;

namespace Relay.Ingress.Grpc;

/// <summary>
/// The node's open Connect streams. Kestrel's graceful stop waits for open calls (up to the host's shutdown timeout),
/// and a stream ended while Kestrel was already closing its connections could lose its last frames: so before any
/// service stops, every stream is told to go (disconnect 50300, reconnect: true, as the node's drain tells WebSockets)
/// and the stop waits, within <c>Relay:Ingress:CloseTimeout</c>, until they have ended.
/// </summary>
internal sealed class GrpcStreams(IngressNode node) : IHostedLifecycleService
{
    private static readonly RelayError Stopping = new(ErrorCodes.Unavailable, "node stopping: reconnect (another node takes the connection) and resume with 'since'");

    private readonly ConcurrentDictionary<GrpcConnection, byte> _open = new();

    public void Add(GrpcConnection connection) => _open.TryAdd(connection, 0);

    public void Remove(GrpcConnection connection) => _open.TryRemove(connection, out _);

    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        if (_open.IsEmpty)
        {
            return;
        }

        foreach (var connection in _open.Keys)
        {
            connection.Drain(Stopping);
        }

        var deadline = node.Time.GetTimestamp() + (long)(node.Options.CloseTimeout.TotalSeconds * node.Time.TimestampFrequency);
        try
        {
            while (!_open.IsEmpty && node.Time.GetTimestamp() < deadline)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(20), node.Time, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The host's shutdown timeout ran out first: the node aborts the rest.
        }
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

using System.Collections.Concurrent;
using System.Security.Cryptography;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Bus;
using Relay.Bus.FanOut;
using Relay.Core.Messages;
using Relay.Ingress.Realtime;
using Relay.Ingress.Subscriptions;

namespace Relay.Ingress;

/// <summary>
/// This ingress node: its id on the bus, its connections and subscription index, and the one background loop
/// that checks token expiry and close deadlines for every connection (no timer per connection).
/// </summary>
public sealed partial class IngressNode : INodeHandler, IHostedService, IDisposable
{
    private readonly ConcurrentDictionary<string, RealtimeConnection> _connections = new(StringComparer.Ordinal);
    private readonly ILogger<IngressNode> _logger;
    private readonly CancellationTokenSource _stopping = new();
    private IDisposable? _registration;
    private Task? _sweep;

    /// <summary>Creates the node.</summary>
    public IngressNode(IRelayBus bus, IOptions<IngressOptions> options, TimeProvider time, ILogger<IngressNode> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        Bus = bus;
        Options = options.Value;
        Time = time;
        _logger = logger;
        NodeId = string.IsNullOrEmpty(Options.NodeId) ? $"ingress-{Environment.MachineName}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3))}" : Options.NodeId;
    }

    /// <summary>This node's id on the bus.</summary>
    public string NodeId { get; }

    /// <summary>How many realtime connections are open.</summary>
    public int ConnectionCount => _connections.Count;

    internal IRelayBus Bus { get; }

    internal IngressOptions Options { get; }

    internal TimeProvider Time { get; }

    internal LocalSubscriptions Subscriptions { get; } = new();

    internal CancellationToken Stopping => _stopping.Token;

    /// <inheritdoc />
    public ValueTask OnDeliverAsync(RelayMessage message)
    {
        Subscriptions.Dispatch(message);
        return ValueTask.CompletedTask;
    }

    internal void Register(RealtimeConnection connection) => _connections[connection.ConnectionId] = connection;

    internal void Unregister(RealtimeConnection connection) =>
        _connections.TryRemove(new KeyValuePair<string, RealtimeConnection>(connection.ConnectionId, connection));

    internal ValueTask AddSubscriptionAsync(Subscription subscription)
    {
        var count = Subscriptions.Add(subscription);
        return Bus.SendInterestAsync(new InterestChange(NodeId, subscription.App, subscription.Channel, count));
    }

    internal ValueTask RemoveSubscriptionAsync(Subscription subscription)
    {
        var count = Subscriptions.Remove(subscription);
        return Bus.SendInterestAsync(new InterestChange(NodeId, subscription.App, subscription.Channel, count));
    }

    /// <inheritdoc />
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _registration = Bus.ServeNode(NodeId, this);
        _sweep = SweepAsync(_stopping.Token);
        LogStarted(_logger, NodeId);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        foreach (var connection in _connections.Values)
        {
            connection.Abort();
        }

        if (_sweep is not null)
        {
            await _sweep.WaitAsync(cancellationToken).ConfigureAwait(false);
        }

        _registration?.Dispose();
    }

    /// <inheritdoc />
    public void Dispose() => _stopping.Dispose();

    private async Task SweepAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), Time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                var now = Time.GetUtcNow();
                foreach (var connection in _connections.Values)
                {
                    connection.CheckDeadlines(now);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
    }

    [LoggerMessage(EventId = 1000, Level = LogLevel.Information, Message = "Ingress node {NodeId} serving")]
    private static partial void LogStarted(ILogger logger, string nodeId);
}

using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Relay.Bus;
using Relay.Bus.FanOut;
using Relay.Core.Diagnostics;
using Relay.Core.Messages;
using Relay.FanOut.Interest;

namespace Relay.FanOut;

/// <summary>Delivers each sequenced message once per interested ingress node, never once per subscriber.</summary>
public sealed class FanOutService : IFanOutHandler, IHostedService
{
    private readonly IRelayBus _bus;
    private readonly InterestTable _interest;
    private IDisposable? _registration;
    private long _messages;
    private long _nodeDeliveries;

    /// <summary>Creates the service and its meter (<c>Relay.FanOut</c>: messages in, deliveries to nodes).</summary>
    public FanOutService(IRelayBus bus, InterestTable interest, IMeterFactory meters)
    {
        ArgumentNullException.ThrowIfNull(meters);
        _bus = bus;
        _interest = interest;
        var meter = meters.Create("Relay.FanOut");
        meter.CreateObservableCounter("relay.fanout.messages", () => Interlocked.Read(ref _messages), description: "Sequenced messages fan-out received.");
        meter.CreateObservableCounter("relay.fanout.node_deliveries", () => Interlocked.Read(ref _nodeDeliveries), description: "Messages handed to ingress nodes (one per interested node, never per subscriber).");
    }

    /// <inheritdoc />
    public ValueTask OnSequencedAsync(RelayMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        using var activity = RelayTracing.Start(RelayTracing.FanOutDispatch, ActivityKind.Internal, message.TraceParent, message.Channel);
        Interlocked.Increment(ref _messages);
        _interest.ForEachNode(message.App, message.Channel, (bus: _bus, message, self: this), static (node, state) =>
        {
            Interlocked.Increment(ref state.self._nodeDeliveries);
            // In-memory deliveries complete synchronously; a networked bus batches and completes later.
            var delivery = state.bus.DeliverToNodeAsync(node, state.message);
            if (!delivery.IsCompletedSuccessfully)
            {
                delivery.AsTask().GetAwaiter().GetResult();
            }
        });
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask OnInterestAsync(InterestChange change)
    {
        _interest.Apply(change);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask OnNodeGoneAsync(string nodeId)
    {
        _interest.RemoveNode(nodeId);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask<IReadOnlyList<ChannelCount>> QueryChannelsAsync(string app, string? prefix, CancellationToken cancellationToken) =>
        ValueTask.FromResult(_interest.Channels(app, prefix));

    /// <inheritdoc />
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _registration = _bus.ServeFanOut(this);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task StopAsync(CancellationToken cancellationToken)
    {
        _registration?.Dispose();
        return Task.CompletedTask;
    }
}

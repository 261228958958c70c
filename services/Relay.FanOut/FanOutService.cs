using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Relay.Bus;
using Relay.Bus.FanOut;
using Relay.Core.Diagnostics;
using Relay.Core.Messages;
using Relay.FanOut.Interest;

namespace Relay.FanOut;

/// <summary>Delivers each sequenced message once per interested ingress node, never once per subscriber.</summary>
public sealed partial class FanOutService : IFanOutHandler, IHostedService
{
    private readonly IRelayBus _bus;
    private readonly InterestTable _interest;
    private readonly ILogger<FanOutService> _logger;
    private readonly ISequencedTap[] _taps;
    private readonly IInterestTap[] _interestTaps;
    private IDisposable? _registration;
    private long _messages;
    private long _nodeDeliveries;

    /// <summary>
    /// Creates the service and its meter (<c>Relay.FanOut</c>: messages in, deliveries to nodes); <paramref name="taps"/>
    /// see every message too, <paramref name="interestTaps"/> every interest change.
    /// </summary>
    public FanOutService(IRelayBus bus, InterestTable interest, IMeterFactory meters, ILogger<FanOutService> logger, IEnumerable<ISequencedTap>? taps = null, IEnumerable<IInterestTap>? interestTaps = null)
    {
        ArgumentNullException.ThrowIfNull(meters);
        _bus = bus;
        _taps = taps is null ? [] : [.. taps];
        _interestTaps = interestTaps is null ? [] : [.. interestTaps];
        _logger = logger;
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

            // Both buses complete at once (the node is called, or the message is queued for it); one that does not is
            // watched for failure, never waited on: fan-out must not block the thread that brings it messages.
            var delivery = state.bus.DeliverToNodeAsync(node, state.message);
            if (!delivery.IsCompletedSuccessfully)
            {
                _ = state.self.ObserveAsync(delivery.AsTask(), node);
            }
        });

        // Beside the deliveries, never instead of them: a tap (the Kafka firehose) queues and returns.
        foreach (var tap in _taps)
        {
            tap.OnSequenced(message);
        }

        return ValueTask.CompletedTask;
    }

    private async Task ObserveAsync(Task delivery, string node)
    {
        try
        {
            await delivery.ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            LogDeliveryFailed(_logger, node, e);
        }
    }

    [LoggerMessage(EventId = 1500, Level = LogLevel.Warning, Message = "A delivery to node {Node} failed")]
    private static partial void LogDeliveryFailed(ILogger logger, string node, Exception error);

    /// <inheritdoc />
    public ValueTask OnInterestAsync(InterestChange change)
    {
        _interest.Apply(change);
        foreach (var tap in _interestTaps)
        {
            tap.OnInterest(change);
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask OnNodeGoneAsync(string nodeId)
    {
        _interest.RemoveNode(nodeId);
        foreach (var tap in _interestTaps)
        {
            tap.OnNodeGone(nodeId);
        }

        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask OnChannelsLeftAsync(Func<string, string, bool> leaving)
    {
        _interest.RemoveChannels(leaving);
        foreach (var tap in _interestTaps)
        {
            tap.OnChannelsLeft(leaving);
        }

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

using System.Diagnostics;
using Microsoft.Extensions.Hosting;
using Relay.Bus;
using Relay.Bus.FanOut;
using Relay.Core.Diagnostics;
using Relay.Core.Messages;
using Relay.FanOut.Interest;

namespace Relay.FanOut;

/// <summary>Delivers each sequenced message once per interested ingress node, never once per subscriber.</summary>
public sealed class FanOutService(IRelayBus bus, InterestTable interest) : IFanOutHandler, IHostedService
{
    private IDisposable? _registration;

    /// <inheritdoc />
    public ValueTask OnSequencedAsync(RelayMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        using var activity = RelayTracing.Start(RelayTracing.FanOutDispatch, ActivityKind.Internal, message.TraceParent, message.Channel);
        interest.ForEachNode(message.App, message.Channel, (bus, message), static (node, state) =>
        {
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
        interest.Apply(change);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask OnNodeGoneAsync(string nodeId)
    {
        interest.RemoveNode(nodeId);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask<IReadOnlyList<ChannelCount>> QueryChannelsAsync(string app, string? prefix, CancellationToken cancellationToken) =>
        ValueTask.FromResult(interest.Channels(app, prefix));

    /// <inheritdoc />
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _registration = bus.ServeFanOut(this);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task StopAsync(CancellationToken cancellationToken)
    {
        _registration?.Dispose();
        return Task.CompletedTask;
    }
}

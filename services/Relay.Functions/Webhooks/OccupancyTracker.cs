using Relay.Bus.FanOut;

namespace Relay.Functions.Webhooks;

/// <summary>
/// Tells the webhook dispatcher when a channel becomes occupied or vacated, from the interest changes fan-out receives
/// (<see cref="ChannelOccupancy"/> keeps which nodes have subscribers on which channels).
/// </summary>
internal sealed class OccupancyTracker(WebhookDispatcher webhooks, TimeProvider time)
{
    private readonly ChannelOccupancy _channels = new(
        static (_, _) => true,
        (app, channel, occupied) => webhooks.OnOccupancy(app, channel, occupied, time.GetUtcNow().ToUnixTimeMilliseconds()));

    public void Apply(InterestChange change) => _channels.Apply(change);

    public void RemoveNode(string nodeId) => _channels.RemoveNode(nodeId);

    /// <summary>Another fan-out process took these channels over: forgotten without an event (the new owner reports them).</summary>
    public void Forget(Func<string, string, bool> leaving) => _channels.Forget(leaving);
}

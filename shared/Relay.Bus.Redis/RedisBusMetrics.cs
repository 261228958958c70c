using System.Diagnostics.Metrics;

namespace Relay.Bus.Redis;

/// <summary>
/// The Redis bus's meter: what an operator needs to see of the hops Redis carries (routing requests that failed or were
/// sent again, shard leases held and lapsed, deliveries a lapsed fan-out lease dropped, subscriptions restored after a
/// lost connection). Plain interlocked counts read by observable instruments: nothing is recorded on the hot path.
/// </summary>
internal sealed class RedisBusMetrics
{
    public const string MeterName = "Relay.Bus.Redis";

    private long _requestsFailed;
    private long _requestsResent;
    private long _fanOutLeaseLapses;
    private long _subscriptionRestores;

    public RedisBusMetrics(IMeterFactory? meters, Func<int> routingShards, Func<int> fanOutShards, Func<long> fencedDeliveries)
    {
        if (meters is null)
        {
            return;
        }

        var meter = meters.Create(MeterName);
        meter.CreateObservableCounter("relay.redis.routing_requests_failed", () => Interlocked.Read(ref _requestsFailed), description: "Routing requests this process sent that ended in 50300 (no owner answered in time, Redis away, an answer lost in a reconnect).");
        meter.CreateObservableCounter("relay.redis.routing_requests_resent", () => Interlocked.Read(ref _requestsResent), description: "Routing requests sent again: every receiver declined (a shard between owners), or the reply subscription was lost while one was out.");
        meter.CreateObservableGauge("relay.redis.routing_shards_held", routingShards, description: "Routing shards whose lease this process holds.");
        meter.CreateObservableGauge("relay.redis.fanout_shards_held", fanOutShards, description: "Fan-out shards whose lease this process holds.");
        meter.CreateObservableCounter("relay.redis.fanout_lease_lapses", () => Interlocked.Read(ref _fanOutLeaseLapses), description: "Fan-out shard leases that ran out here before their renewal (a paused or starved process): their nodes are told to resync.");
        meter.CreateObservableCounter("relay.redis.fanout_fenced_deliveries", fencedDeliveries, description: "Messages a fan-out process did not deliver because its lease on their shard had lapsed or was given up (nodes read them back from history).");
        meter.CreateObservableCounter("relay.redis.subscription_restores", () => Interlocked.Read(ref _subscriptionRestores), description: "Times this process's Redis subscriptions came back after its connection was lost (each makes nodes check every channel).");
    }

    public void RequestFailed() => Interlocked.Increment(ref _requestsFailed);

    public void RequestResent() => Interlocked.Increment(ref _requestsResent);

    public void FanOutLeasesLapsed(int shards) => Interlocked.Add(ref _fanOutLeaseLapses, shards);

    public void SubscriptionsRestored() => Interlocked.Increment(ref _subscriptionRestores);
}

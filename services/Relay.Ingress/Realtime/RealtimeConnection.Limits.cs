using Relay.Core.Protocol;

namespace Relay.Ingress.Realtime;

/// <summary>The per-connection limits on what a connection makes routing keep or do (see docs/protocol.md, "Limits").</summary>
internal sealed partial class RealtimeConnection
{
    private static TokenBucket NewReadBucket(IngressNode node)
    {
        var options = node.Options;
        var burst = options.ReadBurst == 0 ? Math.Max(options.ReadRatePerSecond * 2, options.MaxSubscriptionsPerConnection) : options.ReadBurst;
        return new TokenBucket(options.ReadRatePerSecond, burst, node.Time.GetTimestamp());
    }

    /// <summary>
    /// A subscribe, history read or presence get is a request to routing (on the Redis bus, a script that may create
    /// keys): one connection naming 200,000 channels in 10 s is refused with 42900 rather than served.
    /// </summary>
    private void TakeRead()
    {
        if (!_readRate.TryTake(_node.Time.GetTimestamp(), _node.Time.TimestampFrequency))
        {
            throw new RelayException(ErrorCodes.RateLimited, $"subscribe, history and presence get above {_node.Options.ReadRatePerSecond} per second on this connection; slow down");
        }
    }
}

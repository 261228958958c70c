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
        if (!_readRate.TryTake(_inputTimestamp, _node.Time.TimestampFrequency))
        {
            throw new RelayException(ErrorCodes.RateLimited, $"subscribe, history and presence get above {_node.Options.ReadRatePerSecond} per second on this connection; slow down");
        }
    }

    /// <summary>
    /// Checks an enter, update or leave before anything is stored: the connection's presence entries, the data's size and
    /// the rate. Changes take from the publish bucket: each one goes to every subscriber of the channel as a message does,
    /// so one bucket caps what a connection makes the node fan out, however it mixes publishes and presence.
    /// </summary>
    private void CheckPresenceChange(string channel, string action, int dataBytes)
    {
        var maxData = Math.Min(_node.Options.MaxPresenceDataBytes, _node.Options.MaxMessageBytes);
        if (dataBytes > maxData)
        {
            throw new RelayException(ErrorCodes.MessageTooLarge, $"presence data of {dataBytes} bytes is larger than {maxData} (Relay:Ingress:MaxPresenceDataBytes)");
        }

        if (action != "leave" && _presence is { } entered && entered.Count >= _node.Options.MaxPresencePerConnection && !entered.Contains(channel))
        {
            throw new RelayException(ErrorCodes.RateLimited, $"a connection may be present in at most {_node.Options.MaxPresencePerConnection} channels; leave one first");
        }

        if (!_publishRate.TryTake(_inputTimestamp, _node.Time.TimestampFrequency))
        {
            throw new RelayException(ErrorCodes.RateLimited, $"publishes and presence changes above {_node.Options.PublishRatePerSecond} per second on this connection; slow down");
        }
    }
}

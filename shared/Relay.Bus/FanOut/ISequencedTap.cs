using Relay.Core.Messages;

namespace Relay.Bus.FanOut;

/// <summary>
/// Sees every sequenced message fan-out receives, beside its deliveries to nodes (the Kafka firehose is one). Called on
/// fan-out's thread in seq order per channel, presence events included: it must not block and should not allocate.
/// </summary>
public interface ISequencedTap
{
    /// <summary>Takes one message; returns at once (queue it, drop it, never wait).</summary>
    void OnSequenced(RelayMessage message);
}

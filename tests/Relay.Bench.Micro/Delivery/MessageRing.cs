using Relay.Core.Messages;
using Relay.Core.Protocol;

namespace Relay.Bench.Micro.Delivery;

/// <summary>
/// Pre-built, pre-encoded messages for a steady state that never ends: two epochs of <see cref="PerEpoch"/> messages
/// with seq 1, 2, … each, taken in turn. Within an epoch every subscription sees a rising seq (its normal path); at
/// the switch the other epoch is new to it, so nothing is dropped as already passed, however long a benchmark runs.
/// Each frame is encoded once here (as the first subscriber's delivery would), so taking one allocates nothing.
/// </summary>
internal sealed class MessageRing
{
    public const int PerEpoch = 1024;

    private readonly RelayMessage[] _messages = new RelayMessage[2 * PerEpoch];
    private int _next;

    public MessageRing()
    {
        for (var i = 0; i < _messages.Length; i++)
        {
            var message = DeliveryRig.NewMessage((i % PerEpoch) + 1, i < PerEpoch ? "epoch-a" : "epoch-b");
            ServerFrames.PushFrame(message);
            _messages[i] = message;
        }
    }

    public RelayMessage Next()
    {
        var message = _messages[_next];
        _next = _next + 1 == _messages.Length ? 0 : _next + 1;
        return message;
    }
}

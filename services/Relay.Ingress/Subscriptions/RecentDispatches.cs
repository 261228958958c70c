using Relay.Core.Channels;
using Relay.Core.Messages;

namespace Relay.Ingress.Subscriptions;

/// <summary>
/// The last messages this node dispatched, each with when (UTC ticks, the kernel's receive timestamps' clock): a
/// subscription made for a request that arrived before some of them, but was read after they went out, takes them
/// from here (<see cref="IngressNode.StartSubscriptionAsync"/>'s <c>arrivedTicks</c>). Reads of two connections run on
/// different threads, so an MQTT client's SUBSCRIBE can be read after a PUBLISH another client sent after it; a
/// broker that reads on one thread delivers that message, and so does Relay.
/// </summary>
/// <remarks>
/// At most <see cref="Capacity"/> messages and <see cref="MaxBytes"/> of their payloads (the oldest go first), since
/// each is held alive while kept: at 100,000 messages a second it reaches back ~5 ms, the delay it covers; 4 MiB is
/// 64 of the largest messages. One lock: a dispatch adds once per message (not per delivery); a subscription looks
/// back once.
/// </remarks>
internal sealed class RecentDispatches
{
    /// <summary>How many messages are kept at most (a power of two).</summary>
    public const int Capacity = 512;

    /// <summary>How many payload bytes the kept messages hold at most.</summary>
    public const int MaxBytes = 4 * 1024 * 1024;

    private readonly Entry[] _entries = new Entry[Capacity];
    private readonly Lock _gate = new();

    // The kept entries are [_oldest, _next), holding _bytes of payload.
    private long _next;
    private long _oldest;
    private long _bytes;

    /// <summary>Records <paramref name="message"/> as dispatched now, before its subscribers are visited.</summary>
    public void Add(RelayMessage message)
    {
        lock (_gate)
        {
            if (_next - _oldest == Capacity)
            {
                DropOldest();
            }

            // Taken under the lock, so the ring's times never go back (but for the clock being set back).
            _entries[(int)(_next & (Capacity - 1))] = new Entry(message, DateTime.UtcNow.Ticks);
            _next++;
            _bytes += message.Data.Length;
            while (_bytes > MaxBytes && _next - _oldest > 1)
            {
                DropOldest();
            }
        }
    }

    /// <summary>
    /// The messages of <paramref name="app"/>'s <paramref name="channel"/> (with <paramref name="isPattern"/>, of the
    /// channels it matches) dispatched after <paramref name="afterTicks"/> that are still kept, oldest first (presence
    /// events left out: they are not repeated to a late subscriber); null when none.
    /// </summary>
    public List<RelayMessage>? After(string app, string channel, bool isPattern, long afterTicks)
    {
        List<RelayMessage>? found = null;
        lock (_gate)
        {
            for (var i = _next - 1; i >= _oldest; i--)
            {
                var entry = _entries[(int)(i & (Capacity - 1))];
                if (entry.Ticks <= afterTicks)
                {
                    break;
                }

                var message = entry.Message!;
                if (message.PresenceAction is null && string.Equals(message.App, app, StringComparison.Ordinal)
                    && (isPattern ? ChannelName.PatternMatches(channel, message.Channel) : string.Equals(message.Channel, channel, StringComparison.Ordinal)))
                {
                    (found ??= []).Add(message);
                }
            }
        }

        found?.Reverse();
        return found;
    }

    // Lets the oldest kept message go (the reference too, so it can be collected).
    private void DropOldest()
    {
        ref var oldest = ref _entries[(int)(_oldest & (Capacity - 1))];
        _bytes -= oldest.Message!.Data.Length;
        oldest = default;
        _oldest++;
    }

    private readonly record struct Entry(RelayMessage? Message, long Ticks);
}

using System.Runtime.InteropServices;
using Relay.Core.Messages;

namespace Relay.Ingress.Subscriptions;

/// <summary>
/// Drops a live delivery that a connection already got through another of its subscriptions (a channel and a pattern
/// matching it, or two overlapping patterns). The node dispatches a channel's messages in seq order, every matching
/// subscription in one pass, but passes for other channels run on other threads meanwhile, so "the message sent last"
/// is not enough: once the connection has a pattern subscription, each channel's epoch and last seq delivered live
/// are kept, and a copy at or below it is dropped. Without a pattern no copy can come twice, and nothing is kept.
/// </summary>
internal sealed class RepeatFilter
{
    /// <summary>Channels remembered; past it the memory starts again (a copy racing that moment may go out twice).</summary>
    private const int MaxChannels = 4096;

    private RelayMessage? _last;
    private Dictionary<string, (string Epoch, long Seq)>? _channels;
    private volatile bool _patterns;

    /// <summary>The connection subscribed to a pattern: from now on copies are looked for per channel.</summary>
    public void PatternAdded() => _patterns = true;

    /// <summary>Whether <paramref name="message"/>, delivered live, is a copy this connection was already given.</summary>
    public bool IsRepeat(RelayMessage message)
    {
        if (ReferenceEquals(Interlocked.Exchange(ref _last, message), message))
        {
            return true;
        }

        if (!_patterns || message.Seq <= 0 || message.PresenceAction is not null)
        {
            return false;
        }

        var channels = _channels ?? Interlocked.CompareExchange(ref _channels, new Dictionary<string, (string, long)>(StringComparer.Ordinal), null) ?? _channels;
        lock (channels)
        {
            if (channels.Count >= MaxChannels && !channels.ContainsKey(message.Channel))
            {
                channels.Clear();
            }

            ref var last = ref CollectionsMarshal.GetValueRefOrAddDefault(channels, message.Channel, out var known);
            if (known && message.Seq <= last.Seq && string.Equals(last.Epoch, message.Epoch, StringComparison.Ordinal))
            {
                return true;
            }

            last = (message.Epoch, message.Seq);
            return false;
        }
    }
}

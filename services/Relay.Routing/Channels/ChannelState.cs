using System.Security.Cryptography;
using Relay.Core.Messages;

namespace Relay.Routing.Channels;

/// <summary>
/// One channel's authority: its epoch, its last seq, its bounded history and its idempotency window.
/// Every member is used under <see cref="Gate"/>, which is what makes per-channel order simple.
/// </summary>
internal sealed class ChannelState(string epoch)
{
    private readonly Queue<RelayMessage> _history = new();
    private readonly Dictionary<string, (long Seq, long ExpiresAt)> _recentIds = new(StringComparer.Ordinal);
    private readonly Queue<(string Id, long ExpiresAt)> _idExpiry = new();

    public Lock Gate { get; } = new();

    public string Epoch { get; } = epoch;

    public long Seq { get; private set; }

    /// <summary>Unix ms of the last publish or read, for the idle sweep.</summary>
    public long LastUsed { get; set; }

    /// <summary>Whether the sweep removed this state; a caller that finds this must look the channel up again.</summary>
    public bool Retired { get; set; }

    public static string NewEpoch() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(5));

    public long NextSeq() => ++Seq;

    public bool TryGetRecentId(string id, long now, out long seq)
    {
        ExpireIds(now);
        if (_recentIds.TryGetValue(id, out var entry))
        {
            seq = entry.Seq;
            return true;
        }

        seq = 0;
        return false;
    }

    public void RememberId(string id, long seq, long expiresAt)
    {
        _recentIds[id] = (seq, expiresAt);
        _idExpiry.Enqueue((id, expiresAt));
    }

    public void Append(RelayMessage message, int maxSize)
    {
        if (maxSize == 0)
        {
            return;
        }

        _history.Enqueue(message);
        while (_history.Count > maxSize)
        {
            _history.Dequeue();
        }
    }

    public void ExpireHistory(long oldestTimestamp)
    {
        while (_history.TryPeek(out var oldest) && oldest.Timestamp < oldestTimestamp)
        {
            _history.Dequeue();
        }
    }

    public bool HasHistory => _history.Count > 0;

    public bool HasRecentIds => _recentIds.Count > 0;

    /// <summary>Up to <paramref name="limit"/> newest messages with seq below <paramref name="before"/>, oldest first.</summary>
    public List<RelayMessage> ReadBackward(int limit, long before)
    {
        var result = new List<RelayMessage>(Math.Min(limit, _history.Count));
        foreach (var message in _history)
        {
            if (message.Seq < before)
            {
                result.Add(message);
            }
        }

        if (result.Count > limit)
        {
            result.RemoveRange(0, result.Count - limit);
        }

        return result;
    }

    /// <summary>Up to <paramref name="limit"/> messages after <paramref name="afterSeq"/>, oldest first; complete when none was lost.</summary>
    public (List<RelayMessage> Messages, bool Complete) ReadForward(int limit, long afterSeq)
    {
        var result = new List<RelayMessage>();
        if (afterSeq > Seq)
        {
            return (result, false);
        }

        var complete = afterSeq == Seq || (_history.TryPeek(out var oldest) && oldest.Seq <= afterSeq + 1);
        foreach (var message in _history)
        {
            if (message.Seq > afterSeq && result.Count < limit)
            {
                result.Add(message);
            }
        }

        return (result, complete && result.Count == Seq - afterSeq);
    }

    private void ExpireIds(long now)
    {
        while (_idExpiry.TryPeek(out var entry) && entry.ExpiresAt <= now)
        {
            _idExpiry.Dequeue();
            if (_recentIds.TryGetValue(entry.Id, out var current) && current.ExpiresAt == entry.ExpiresAt)
            {
                _recentIds.Remove(entry.Id);
            }
        }
    }

    public void Sweep(long now) => ExpireIds(now);
}

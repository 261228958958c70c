using Relay.Core.Messages;
using Relay.Core.Namespaces;

namespace Relay.Routing.Channels;

/// <summary>
/// One channel's authority: its epoch, its last seq, its bounded history and its idempotency window.
/// Every member is used under <see cref="Gate"/>, which is what makes per-channel order simple.
/// </summary>
internal sealed class ChannelState(string epoch, NamespacePolicy policy)
{
    private readonly Queue<RelayMessage> _history = new();
    // Created on first use: most channels never see an idempotency id or a presence member.
    private static readonly Dictionary<(string ClientId, string ConnectionId), RelayMessage> NoMembers = [];
    private Dictionary<string, (long Seq, long ExpiresAt)>? _recentIds;
    private Queue<(string Id, long ExpiresAt)>? _idExpiry;

    private Dictionary<(string ClientId, string ConnectionId), RelayMessage>? _members;

    private readonly long _historyTtlMs = (long)policy.HistoryTtl.TotalMilliseconds;

    // Unix ms up to which nothing in history has expired: the oldest message's timestamp plus the TTL when it was last
    // looked at. Every publish asks (ExpireHistory); reading the oldest message each time cost 2% of a publish. A message
    // dropped for size is followed by later ones, so this stays a lower bound without reading the new oldest (if the
    // wall clock stepped back, a message may stay up to that step longer).
    private long _historyExpiresAfter = long.MaxValue;

    public Lock Gate { get; } = new();

    public string Epoch { get; } = epoch;

    public NamespacePolicy Policy { get; } = policy;

    public long Seq { get; private set; }

    /// <summary>Unix ms of the last publish or read, for the idle sweep.</summary>
    public long LastUsed { get; set; }

    /// <summary>Whether the sweep removed this state; a caller that finds this must look the channel up again.</summary>
    public bool Retired { get; set; }

    /// <summary>An epoch's length in bytes (10 hex characters).</summary>
    public const int EpochBytes = 5;

    public long NextSeq() => ++Seq;

    public bool TryGetRecentId(string id, long now, out long seq)
    {
        ExpireIds(now);
        if (_recentIds is not null && _recentIds.TryGetValue(id, out var entry))
        {
            seq = entry.Seq;
            return true;
        }

        seq = 0;
        return false;
    }

    public void RememberId(string id, long seq, long expiresAt)
    {
        (_recentIds ??= new(StringComparer.Ordinal))[id] = (seq, expiresAt);
        (_idExpiry ??= new()).Enqueue((id, expiresAt));
    }

    public void Append(RelayMessage message)
    {
        var maxSize = Policy.HistorySize;
        if (maxSize == 0)
        {
            return;
        }

        if (_history.Count == 0)
        {
            _historyExpiresAfter = message.Timestamp + _historyTtlMs;
        }

        _history.Enqueue(message);
        while (_history.Count > maxSize)
        {
            _history.Dequeue();
        }
    }

    public void ExpireHistory(long now)
    {
        if (now <= _historyExpiresAfter)
        {
            return;
        }

        var oldestTimestamp = now - _historyTtlMs;
        while (_history.TryPeek(out var oldest) && oldest.Timestamp < oldestTimestamp)
        {
            _history.Dequeue();
        }

        _historyExpiresAfter = _history.TryPeek(out var next) ? next.Timestamp + _historyTtlMs : long.MaxValue;
    }

    public bool HasHistory => _history.Count > 0;

    public bool HasRecentIds => _recentIds is { Count: > 0 };

    public bool HasMembers => _members is { Count: > 0 };

    public List<RelayMessage> Members() => [.. (_members ?? NoMembers).Values];

    /// <summary>Whether the member is present already or the presence set has room for one more.</summary>
    public bool HasRoomFor(string clientId, string connectionId) =>
        _members is null || _members.Count < Policy.MaxPresenceMembers || _members.ContainsKey((clientId, connectionId));

    /// <summary>Records a member's state; returns the event to send: enter for a client's first connection, else update.</summary>
    public RelayMessage SetMember(RelayMessage record)
    {
        var clientWasPresent = HasClient(record.ClientId!);
        (_members ??= [])[(record.ClientId!, record.ConnectionId!)] = record;
        return WithAction(record, clientWasPresent ? "update" : "enter");
    }

    /// <summary>Removes a member; returns the leave event when it was the client's last connection here, or null.</summary>
    public RelayMessage? RemoveMember(RelayMessage record)
    {
        if (_members is null || !_members.Remove((record.ClientId!, record.ConnectionId!), out var removed))
        {
            return null;
        }

        return HasClient(record.ClientId!) ? null : WithAction(removed, "leave", record.Data.IsEmpty ? removed.Data : record.Data);
    }

    private bool HasClient(string clientId)
    {
        foreach (var key in (_members ?? NoMembers).Keys)
        {
            if (key.ClientId == clientId)
            {
                return true;
            }
        }

        return false;
    }

    private static RelayMessage WithAction(RelayMessage record, string action, ReadOnlyMemory<byte>? data = null) => new()
    {
        App = record.App,
        Channel = record.Channel,
        Epoch = record.Epoch,
        ClientId = record.ClientId,
        ConnectionId = record.ConnectionId,
        Data = data ?? record.Data,
        PresenceAction = action,
        Timestamp = record.Timestamp,
    };

    /// <summary>
    /// Up to <paramref name="limit"/> newest messages with seq below <paramref name="before"/>, oldest first; with
    /// <paramref name="maxBytes"/>, only the newest whose data fits in it (at least one), and whether older ones were left out.
    /// </summary>
    public (List<RelayMessage> Messages, bool Truncated) ReadBackward(int limit, long before, long maxBytes = 0)
    {
        var result = new List<RelayMessage>(Math.Min(limit, _history.Count));
        foreach (var message in _history)
        {
            if (message.Seq < before)
            {
                result.Add(message);
            }
        }

        var first = Math.Max(0, result.Count - limit);
        var truncated = false;
        if (maxBytes > 0)
        {
            // From the newest down, while the data fits (at least one).
            var keep = result.Count;
            var bytes = 0L;
            while (keep > first && (keep == result.Count || bytes + result[keep - 1].Data.Length <= maxBytes))
            {
                keep--;
                bytes += result[keep].Data.Length;
            }

            truncated = keep > first;
            first = keep;
        }

        result.RemoveRange(0, first);
        return (result, truncated);
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
        while (_idExpiry is not null && _idExpiry.TryPeek(out var entry) && entry.ExpiresAt <= now)
        {
            _idExpiry.Dequeue();
            if (_recentIds!.TryGetValue(entry.Id, out var current) && current.ExpiresAt == entry.ExpiresAt)
            {
                _recentIds.Remove(entry.Id);
            }
        }
    }

    public void Sweep(long now) => ExpireIds(now);
}

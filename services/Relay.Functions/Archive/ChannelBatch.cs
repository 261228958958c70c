using Relay.Core.Messages;

namespace Relay.Functions.Archive;

/// <summary>One channel's messages waiting for the archive, in seq order, with when the oldest arrived and when to retry.</summary>
internal sealed class ChannelBatch(long since)
{
    private readonly List<RelayMessage> _messages = [];
    private int _failures;

    /// <summary>When the oldest held message arrived (a timestamp).</summary>
    public long Since { get; private set; } = since;

    /// <summary>Not before this timestamp after a failed write.</summary>
    public long RetryAt { get; private set; }

    public int Count => _messages.Count;

    public void Add(RelayMessage message) => _messages.Add(message);

    /// <summary>The oldest messages of one epoch, at most <paramref name="max"/>; false when none are held.</summary>
    public bool TryPeek(int max, out List<RelayMessage> run)
    {
        run = [];
        if (_messages.Count == 0)
        {
            return false;
        }

        var epoch = _messages[0].Epoch;
        for (var i = 0; i < _messages.Count && run.Count < max && _messages[i].Epoch == epoch; i++)
        {
            run.Add(_messages[i]);
        }

        return true;
    }

    public void Remove(int count)
    {
        _messages.RemoveRange(0, count);
        _failures = 0;
        RetryAt = 0;
    }

    public void Failed(long now, long frequency, TimeSpan maxWait)
    {
        _failures++;
        var wait = TimeSpan.FromSeconds(Math.Min(Math.Pow(2, _failures - 1), maxWait.TotalSeconds));
        RetryAt = now + (long)(wait.TotalSeconds * frequency);
    }
}

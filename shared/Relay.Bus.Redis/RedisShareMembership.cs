using Relay.Bus.Shares;
using Relay.Core.Messages;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

/// <summary>This process's membership of a shared subscription's group over Redis (<c>RedisBus.Shares.cs</c>).</summary>
internal sealed class RedisShareMembership : IShareMembership
{
    private readonly RedisBus _bus;
    private readonly Func<bool> _active;
    private readonly RedisKey[] _keys;
    private readonly string _messagePrefix;
    private readonly Lock _gate = new();
    private bool _left;

    public RedisShareMembership(RedisBus bus, ShareGroup group, Func<bool> active)
    {
        _bus = bus;
        _active = active;
        var prefix = RedisKeys.SharePrefix(group.App, group.Name, group.Filter);
        _keys = [prefix + "nodes", prefix + "turn", prefix + "joined"];
        _messagePrefix = prefix + "m:";
    }

    // Under the lock: a renewal's command is written before the call returns, so renewals reach Redis in the order their
    // answers were read, and none can add the process back after it left.
    public void Changed()
    {
        lock (_gate)
        {
            if (!_left)
            {
                _ = _bus.RenewShareAsync(_keys, _active());
            }
        }
    }

    public Task TakeAsync(IReadOnlyList<RelayMessage> messages, IReadOnlyList<TimeSpan> ages, ShareTake[] takes, CancellationToken cancellationToken) =>
        messages.Count == 0 ? Task.CompletedTask : _bus.TakeSharedAsync(_keys, _messagePrefix, messages, ages, takes).WaitAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        Task leaving;
        lock (_gate)
        {
            if (_left)
            {
                return;
            }

            _left = true;
            leaving = _bus.RenewShareAsync(_keys, active: false);
        }

        _bus.LeftShare(this);
        await leaving.ConfigureAwait(false);
    }
}

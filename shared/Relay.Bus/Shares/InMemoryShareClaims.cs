using Relay.Core.Messages;

namespace Relay.Bus.Shares;

/// <summary>The in-memory bus's share claims: one process, so its members are the whole group and it takes every message.</summary>
public sealed class InMemoryShareClaims : IShareClaims
{
    /// <inheritdoc />
    public bool AcrossProcesses => false;

    /// <inheritdoc />
    public IShareMembership Join(ShareGroup group, Func<bool> active) => AlwaysHere.Instance;

    private sealed class AlwaysHere : IShareMembership
    {
        public static readonly AlwaysHere Instance = new();

        public void Changed()
        {
        }

        public Task TakeAsync(IReadOnlyList<RelayMessage> messages, IReadOnlyList<TimeSpan> ages, ShareTake[] takes, CancellationToken cancellationToken)
        {
            Array.Fill(takes, ShareTake.Here, 0, messages.Count);
            return Task.CompletedTask;
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}

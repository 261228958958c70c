using Relay.Core.Messages;

namespace Relay.Bus.Shares;

/// <summary>This process's membership of a shared subscription's group (<see cref="IShareClaims.Join"/>); disposing it leaves the group.</summary>
public interface IShareMembership : IAsyncDisposable
{
    /// <summary>Asks the membership's <c>active</c> again now (a member joined, left, connected or went away).</summary>
    void Changed();

    /// <summary>
    /// Decides who delivers each of <paramref name="messages"/> (in order; <paramref name="takes"/> gets one answer per
    /// message): the first process to ask about a message decides for all.
    /// </summary>
    Task TakeAsync(IReadOnlyList<RelayMessage> messages, ShareTake[] takes, CancellationToken cancellationToken);
}

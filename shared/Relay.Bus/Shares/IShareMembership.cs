using Relay.Core.Messages;

namespace Relay.Bus.Shares;

/// <summary>This process's membership of a shared subscription's group (<see cref="IShareClaims.Join"/>); disposing it leaves the group.</summary>
public interface IShareMembership : IAsyncDisposable
{
    /// <summary>Asks the membership's <c>active</c> again now (a member joined, left, connected or went away).</summary>
    void Changed();

    /// <summary>
    /// Decides who delivers each of <paramref name="messages"/> (in order; <paramref name="takes"/> gets one answer per
    /// message): the first process to ask about a message decides for all. <paramref name="ages"/> says how long ago this
    /// process received each: a process that joined the group after that (and so may never have received it) is not
    /// chosen for it while one that joined before is live.
    /// </summary>
    Task TakeAsync(IReadOnlyList<RelayMessage> messages, IReadOnlyList<TimeSpan> ages, ShareTake[] takes, CancellationToken cancellationToken);
}

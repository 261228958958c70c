namespace Relay.Bus.Shares;

/// <summary>
/// Which process delivers each message of a shared subscription's group (MQTT's <c>$share/{group}/{filter}</c>, MQTT 5
/// §4.8.2: each message to one member of the group, across the whole deployment). Every process with members of a group
/// joins it; each message the group's filter matches reaches every such process, which asks who delivers it: one
/// process is chosen per message, the same answer for every asker.
/// </summary>
public interface IShareClaims
{
    /// <summary>
    /// Whether another process may hold members of the same groups, so each message must be taken
    /// (<see cref="IShareMembership.TakeAsync"/>) before it is delivered. False for the in-memory bus: one process, whose
    /// members are the whole group.
    /// </summary>
    bool AcrossProcesses { get; }

    /// <summary>
    /// Makes this process a holder of members of <paramref name="group"/>: it may be chosen for the group's messages while
    /// <paramref name="active"/> says it has a member to deliver to (asked again every few seconds and on
    /// <see cref="IShareMembership.Changed"/>), and stops being chosen once the membership is disposed or the process
    /// stops renewing it (a lease).
    /// </summary>
    IShareMembership Join(ShareGroup group, Func<bool> active);
}

using Relay.Bus.Shares;

namespace Relay.Bus.Redis;

/// <summary>
/// The Redis bus's <see cref="IShareClaims"/> (<c>AddRedis()</c> registers it, so the Dapr bus has it too): a process's
/// membership of a group is a lease of <see cref="RedisBusOptions.NodeTtl"/> in Redis, and the first process to ask about
/// a message picks its deliverer for all (<c>RedisBus.Shares.cs</c>).
/// </summary>
public sealed class RedisShareClaims(RedisBus bus) : IShareClaims
{
    /// <inheritdoc />
    public bool AcrossProcesses => true;

    /// <inheritdoc />
    public IShareMembership Join(ShareGroup group, Func<bool> active) => bus.JoinShare(group, active);
}

using Relay.Bus.Shares;

namespace Relay.Bus.Redis;

/// <summary>The Redis bus's <see cref="IShareClaims"/> (<c>AddRedis()</c> registers it, so the Dapr bus has it too).</summary>
internal sealed class RedisShareClaims(RedisBus bus) : IShareClaims
{
    public bool AcrossProcesses => true;

    public IShareMembership Join(ShareGroup group, Func<bool> active) => bus.JoinShare(group, active);
}

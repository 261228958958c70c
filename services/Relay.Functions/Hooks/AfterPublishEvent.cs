using Relay.Functions.Delivery;

namespace Relay.Functions.Hooks;

/// <summary>An acknowledged publish on its way to its namespace's after-publish hook.</summary>
internal sealed record AfterPublishEvent(ResolvedHook Hook, string Id, ReadOnlyMemory<byte> Body) : IOutbound
{
    public string Type => "afterPublish";

    public int Size => Body.Length + 256;
}

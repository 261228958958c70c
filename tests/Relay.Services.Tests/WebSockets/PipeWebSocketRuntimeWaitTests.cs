namespace Relay.Services.Tests.WebSockets;

/// <summary>
/// The spec with the first bytes and every read waiting in the runtime (<c>Relay:Ingress:ReadinessPoller=false</c>, and
/// where epoll is not there); <see cref="PipeWebSocketTests"/> waits in Relay's poller, the default on Linux.
/// </summary>
public sealed class PipeWebSocketRuntimeWaitTests : PipeWebSocketSpec
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => settings["Relay:Ingress:ReadinessPoller"] = "false";
}

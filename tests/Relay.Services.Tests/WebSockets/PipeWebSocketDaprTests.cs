using Relay.Testing;

namespace Relay.Services.Tests.WebSockets;

/// <summary><see cref="PipeWebSocketSpec"/> over the Dapr bus, the stand-in delivering each message once, in order.</summary>
public sealed class PipeWebSocketDaprTests(DaprBusFixture dapr) : PipeWebSocketSpec, IClassFixture<DaprBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => dapr.AddTo(settings);

    protected override Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings) => dapr.StartServerAsync(settings);
}

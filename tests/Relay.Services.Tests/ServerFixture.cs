using Relay.Testing;

namespace Relay.Services.Tests;

/// <summary>One real server shared by a test class.</summary>
public sealed class ServerFixture : IAsyncLifetime
{
    public RelayServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await RelayServer.StartAsync(new Dictionary<string, string?>
    {
        ["Relay:Auth:ClockSkewSeconds"] = "0",
        ["Relay:Ingress:MaxMessageBytes"] = "4096",
    });

    public async Task DisposeAsync() => await Server.DisposeAsync();
}

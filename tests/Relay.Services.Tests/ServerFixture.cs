using Relay.Testing;

namespace Relay.Services.Tests;

/// <summary>One real server on the in-memory bus, shared by a test class.</summary>
public sealed class ServerFixture : IServerFixture, IAsyncLifetime
{
    public RelayServer Server { get; private set; } = null!;

    /// <summary>The shared server's settings; <see cref="RedisBusServerFixture"/> starts with the same ones.</summary>
    public static Dictionary<string, string?> Settings() => new()
    {
        ["Relay:Auth:ClockSkewSeconds"] = "0",
        ["Relay:Ingress:MaxMessageBytes"] = "4096",
    };

    public async Task InitializeAsync() => Server = await RelayServer.StartAsync(Settings());

    public async Task DisposeAsync() => await Server.DisposeAsync();
}

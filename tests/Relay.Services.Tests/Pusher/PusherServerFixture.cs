using Relay.Testing;

namespace Relay.Services.Tests.Pusher;

/// <summary>One real server on the in-memory bus for the Pusher tests: the shared settings, with the default 64 KB messages so Pusher's 10 KB events fit.</summary>
public sealed class PusherServerFixture : IAsyncLifetime
{
    public RelayServer Server { get; private set; } = null!;

    public static Dictionary<string, string?> Settings()
    {
        var settings = ServerFixture.Settings();
        settings.Remove("Relay:Ingress:MaxMessageBytes");
        return settings;
    }

    public async Task InitializeAsync() => Server = await RelayServer.StartAsync(Settings());

    public async Task DisposeAsync() => await Server.DisposeAsync();
}

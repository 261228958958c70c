using Relay.Testing;

namespace Relay.Services.Tests.Pusher;

/// <summary>One real server on the in-memory bus for the Pusher tests: the shared settings, with the default 64 KB messages so Pusher's 10 KB events fit.</summary>
public sealed class PusherServerFixture : IAsyncLifetime
{
    public RelayServer Server { get; private set; } = null!;

    public static Dictionary<string, string?> Settings(params (string Setting, string? Value)[] changes)
    {
        var settings = ServerFixture.Settings();
        settings.Remove("Relay:Ingress:MaxMessageBytes");
        foreach (var (setting, value) in changes)
        {
            settings[setting] = value;
        }

        return settings;
    }

    /// <summary>A server of the test's own: the shared settings with <paramref name="changes"/> (its timeouts, quotas, limits).</summary>
    public static Task<RelayServer> StartServerAsync(params (string Setting, string? Value)[] changes) => RelayServer.StartAsync(Settings(changes));

    public async Task InitializeAsync() => Server = await RelayServer.StartAsync(Settings());

    public async Task DisposeAsync() => await Server.DisposeAsync();
}

using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Relay.Standalone;

namespace Relay.Testing;

/// <summary>
/// A real Relay (the standalone composition) on Kestrel at 127.0.0.1 on a free port, with test apps and keys.
/// </summary>
public sealed class RelayServer : IAsyncDisposable
{
    /// <summary>The main test app.</summary>
    public const string AppId = "test";

    /// <summary>A key of <see cref="AppId"/> with every capability on every channel.</summary>
    public const string Key = "test.root:test-root-secret-0123456789";

    /// <summary>The secret of <see cref="Key"/> (for minting HS256 tokens with kid <c>test.root</c>).</summary>
    public const string KeySecret = "test-root-secret-0123456789";

    /// <summary>A key of <see cref="AppId"/> that may only subscribe and read history.</summary>
    public const string SubscribeOnlyKey = "test.sub:test-sub-secret-0123456789";

    /// <summary>A key of <see cref="AppId"/> limited to <c>chat:*</c> (all operations).</summary>
    public const string ChatOnlyKey = "test.chat:test-chat-secret-0123456789";

    /// <summary>A key of a second app, to prove apps never see each other.</summary>
    public const string OtherAppKey = "other.root:other-root-secret-0123456789";

    private readonly WebApplication _app;

    private RelayServer(WebApplication app, Uri baseAddress)
    {
        _app = app;
        BaseAddress = baseAddress;
        RealtimeUri = new Uri($"{(baseAddress.Scheme == Uri.UriSchemeHttps ? "wss" : "ws")}://{baseAddress.Authority}/v1/realtime");
    }

    /// <summary>The HTTP base address, <c>http://127.0.0.1:PORT/</c> (<c>https://</c> on a node serving TLS).</summary>
    public Uri BaseAddress { get; }

    /// <summary>The WebSocket endpoint (<c>wss://</c> on a node serving TLS).</summary>
    public Uri RealtimeUri { get; }

    /// <summary>The MQTT over TLS port (Relay:Mqtt:TlsPort, 0 in tests: a free one); null when the node serves no TLS.</summary>
    public int? MqttTlsPort => _app.Services.GetRequiredService<Relay.Ingress.Mqtt.MqttListener>().TlsPort;

    /// <summary>The MQTT TCP port (Relay:Mqtt:Port, 0 in tests: a free one); null when MQTT is off.</summary>
    public int? MqttPort => _app.Services.GetRequiredService<Relay.Ingress.Mqtt.MqttListener>().Port;

    /// <summary>MQTT over WebSocket, <c>ws://127.0.0.1:PORT/mqtt</c>.</summary>
    public Uri MqttWebSocketUri => new($"ws://{BaseAddress.Authority}/mqtt");

    /// <summary>The gRPC port (Relay:Grpc:Port, 0 in tests: a free one); null when gRPC is off.</summary>
    public int? GrpcPort => _app.Services.GetRequiredService<Relay.Ingress.Grpc.GrpcEndpoint>().Port;

    /// <summary>The plain gRPC (HTTP/2) address, <c>http://127.0.0.1:PORT</c>.</summary>
    public Uri GrpcAddress => new($"http://127.0.0.1:{GrpcPort ?? throw new InvalidOperationException("gRPC is off on this server (Relay:Grpc)")}");

    /// <summary>The host's services.</summary>
    public IServiceProvider Services => _app.Services;

    /// <summary>The test configuration: apps, keys and small limits that tests can reach quickly.</summary>
    public static Dictionary<string, string?> DefaultConfiguration() => new()
    {
        ["Relay:Auth:Apps:0:Id"] = "test",
        ["Relay:Auth:Apps:0:Keys:0:Id"] = "root",
        ["Relay:Auth:Apps:0:Keys:0:Secret"] = KeySecret,
        ["Relay:Auth:Apps:0:Keys:0:Capabilities:0:Channel"] = "*",
        ["Relay:Auth:Apps:0:Keys:0:Capabilities:0:Operations:0"] = "*",
        ["Relay:Auth:Apps:0:Keys:1:Id"] = "sub",
        ["Relay:Auth:Apps:0:Keys:1:Secret"] = "test-sub-secret-0123456789",
        ["Relay:Auth:Apps:0:Keys:1:Capabilities:0:Channel"] = "*",
        ["Relay:Auth:Apps:0:Keys:1:Capabilities:0:Operations:0"] = "subscribe",
        ["Relay:Auth:Apps:0:Keys:1:Capabilities:0:Operations:1"] = "history",
        ["Relay:Auth:Apps:0:Keys:2:Id"] = "chat",
        ["Relay:Auth:Apps:0:Keys:2:Secret"] = "test-chat-secret-0123456789",
        ["Relay:Auth:Apps:0:Keys:2:Capabilities:0:Channel"] = "chat:*",
        ["Relay:Auth:Apps:0:Keys:2:Capabilities:0:Operations:0"] = "*",
        ["Relay:Auth:Apps:1:Id"] = "other",
        ["Relay:Auth:Apps:1:Keys:0:Id"] = "root",
        ["Relay:Auth:Apps:1:Keys:0:Secret"] = "other-root-secret-0123456789",
        ["Relay:Auth:Apps:1:Keys:0:Capabilities:0:Channel"] = "*",
        ["Relay:Auth:Apps:1:Keys:0:Capabilities:0:Operations:0"] = "*",

        // MQTT on a free port: test servers run side by side (and a machine may run mosquitto on 1883).
        ["Relay:Mqtt:Port"] = "0",
        ["Relay:Mqtt:TlsPort"] = "0",

        // gRPC on a free port too (its default 50051 may be taken by another node or another program).
        ["Relay:Grpc:Port"] = "0",
    };

    /// <summary>
    /// Starts a server; <paramref name="configuration"/> entries override <see cref="DefaultConfiguration"/>, and
    /// <paramref name="sources"/> may add configuration sources after them (a settings file a test rewrites).
    /// </summary>
    public static async Task<RelayServer> StartAsync(IDictionary<string, string?>? configuration = null, Action<IServiceCollection>? services = null, Action<IConfigurationBuilder>? sources = null)
    {
        var settings = DefaultConfiguration();
        foreach (var (key, value) in configuration ?? new Dictionary<string, string?>())
        {
            settings[key] = value;
        }

        var builder = StandaloneHost.CreateBuilder(["--environment", "Testing"], b =>
        {
            b.WebHost.UseUrls("http://127.0.0.1:0");
            b.Configuration.AddInMemoryCollection(settings);
            sources?.Invoke(b.Configuration);
            b.Logging.SetMinimumLevel(LogLevel.Warning);
        });
        services?.Invoke(builder.Services);
        var app = StandaloneHost.Build(builder);
        try
        {
            await app.StartAsync().WaitAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        }
        catch
        {
            await app.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new RelayServer(app, new Uri(address.TrimEnd('/') + "/"));
    }

    /// <summary>A WebSocket URI with a key and optional client id.</summary>
    public Uri RealtimeUriWithKey(string key, string? clientId = null) =>
        new($"{RealtimeUri}?key={Uri.EscapeDataString(key)}{(clientId is null ? string.Empty : "&clientId=" + Uri.EscapeDataString(clientId))}");

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().WaitAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}

using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Relay.Auth.Verification;

namespace Relay.Auth.Tests;

/// <summary>Relay.Auth on real Kestrel at 127.0.0.1 on a free port, with test keys, a manual clock and a real client.</summary>
internal sealed class AuthServer : IAsyncDisposable
{
    public const string RootKey = "test.root:" + RootSecret;
    public const string RootSecret = "test-root-secret-0123456789";

    /// <summary>A key that may only subscribe, and only on <c>chat:*</c>.</summary>
    public const string ChatKey = "test.chat:" + ChatSecret;
    public const string ChatSecret = "test-chat-secret-0123456789";

    public const string OtherRootKey = "other.root:" + OtherRootSecret;
    public const string OtherRootSecret = "other-root-secret-0123456789";

    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly WebApplication _app;

    private AuthServer(WebApplication app, Uri baseAddress, ManualClock clock, ListLoggerProvider logs)
    {
        _app = app;
        Clock = clock;
        Logs = logs;
        Client = new HttpClient { BaseAddress = baseAddress, Timeout = Timeout };
    }

    public HttpClient Client { get; }

    public ManualClock Clock { get; }

    public ListLoggerProvider Logs { get; }

    public IRelayAuthenticator Authenticator => _app.Services.GetRequiredService<IRelayAuthenticator>();

    public IServiceProvider Services => _app.Services;

    public static Dictionary<string, string?> DefaultConfiguration() => new()
    {
        ["Relay:Auth:Apps:0:Id"] = "test",
        ["Relay:Auth:Apps:0:Keys:0:Id"] = "root",
        ["Relay:Auth:Apps:0:Keys:0:Secret"] = RootSecret,
        ["Relay:Auth:Apps:0:Keys:0:Capabilities:0:Channel"] = "*",
        ["Relay:Auth:Apps:0:Keys:0:Capabilities:0:Operations:0"] = "*",
        ["Relay:Auth:Apps:0:Keys:1:Id"] = "chat",
        ["Relay:Auth:Apps:0:Keys:1:Secret"] = ChatSecret,
        ["Relay:Auth:Apps:0:Keys:1:Capabilities:0:Channel"] = "chat:*",
        ["Relay:Auth:Apps:0:Keys:1:Capabilities:0:Operations:0"] = "subscribe",
        ["Relay:Auth:Apps:1:Id"] = "other",
        ["Relay:Auth:Apps:1:Keys:0:Id"] = "root",
        ["Relay:Auth:Apps:1:Keys:0:Secret"] = OtherRootSecret,
        ["Relay:Auth:Apps:1:Keys:0:Capabilities:0:Channel"] = "*",
        ["Relay:Auth:Apps:1:Keys:0:Capabilities:0:Operations:0"] = "subscribe",
        ["Relay:Auth:Apps:1:Keys:0:Capabilities:0:Operations:1"] = "publish",
    };

    /// <summary>Starts a server; <paramref name="configure"/> edits <see cref="DefaultConfiguration"/> (a null value removes the key).</summary>
    public static async Task<AuthServer> StartAsync(Action<Dictionary<string, string?>>? configure = null, ManualClock? clock = null)
    {
        var settings = DefaultConfiguration();
        configure?.Invoke(settings);
        foreach (var removed in settings.Where(static s => s.Value is null).Select(static s => s.Key).ToList())
        {
            settings.Remove(removed);
        }

        clock ??= new ManualClock();
        var logs = new ListLoggerProvider();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { EnvironmentName = "Testing" });
        builder.Configuration.Sources.Clear();
        builder.Configuration.AddInMemoryCollection(settings);
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders().AddProvider(logs).SetMinimumLevel(LogLevel.Debug);
        builder.Services.AddSingleton<TimeProvider>(clock);
        builder.Services.AddRelayAuth();
        var app = builder.Build();
        app.MapRelayAuth();
        try
        {
            await app.StartAsync().WaitAsync(Timeout);
        }
        catch
        {
            await app.DisposeAsync().AsTask().WaitAsync(Timeout);
            throw;
        }

        var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First();
        return new AuthServer(app, new Uri(address.TrimEnd('/') + "/"), clock, logs);
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _app.StopAsync().WaitAsync(Timeout);
        await _app.DisposeAsync().AsTask().WaitAsync(Timeout);
    }
}

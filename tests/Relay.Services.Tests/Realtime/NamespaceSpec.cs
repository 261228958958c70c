using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary>Per-namespace options change behaviour only for channels of that namespace.</summary>
public abstract class NamespaceSpec : IAsyncLifetime
{
    private RelayServer _server = null!;

    public async Task InitializeAsync()
    {
        var settings = new Dictionary<string, string?>
        {
            ["Relay:Namespaces:Rules:news:ClientPublish"] = "false",
            ["Relay:Namespaces:Rules:quiet:Presence"] = "false",
            ["Relay:Namespaces:Rules:live:Recovery"] = "false",
            ["Relay:Namespaces:Rules:short:HistorySize"] = "3",
            ["Relay:Namespaces:Rules:small:MaxSubscribers"] = "1",
        };
        ConfigureBus(settings);
        _server = await StartServerAsync(settings);
    }

    /// <summary>
    /// Lets a variant start the server beside what its bus needs (a Dapr sidecar, attached once the server listens);
    /// none means the server alone.
    /// </summary>
    protected virtual Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings) => RelayServer.StartAsync(settings);

    /// <summary>Lets a variant put the server on another bus; none means the in-memory bus.</summary>
    protected virtual void ConfigureBus(IDictionary<string, string?> settings)
    {
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private Task<TestSocket> ConnectAsync() => TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key, "n"));

    [Fact]
    public async Task ClientPublish_Off_RefusesRealtimePublish40300_ButOtherNamespacesWork()
    {
        await using var socket = await ConnectAsync();
        Assert.Equal(40300, (await socket.RequestAsync(new() { ["type"] = "publish", ["channel"] = "news:today", ["data"] = 1 })).GetProperty("code").GetInt32());
        Assert.Equal("ok", (await socket.RequestAsync(new() { ["type"] = "publish", ["channel"] = "chat:today", ["data"] = 1 })).GetProperty("type").GetString());
    }

    [Fact]
    public async Task Presence_Off_RefusesEnter40300()
    {
        await using var socket = await ConnectAsync();
        Assert.Equal(40300, (await socket.RequestAsync(new() { ["type"] = "presence", ["channel"] = "quiet:room", ["action"] = "enter" })).GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task Recovery_Off_AnswersRecoveredFalseAndSendsNothingMissed()
    {
        await using var socket = await ConnectAsync();
        var first = await socket.RequestAsync(new() { ["type"] = "publish", ["channel"] = "live:x", ["data"] = 1 });
        await socket.RequestAsync(new() { ["type"] = "publish", ["channel"] = "live:x", ["data"] = 2 });
        var history = await socket.RequestAsync(new() { ["type"] = "history", ["channel"] = "live:x" });
        var epoch = history.GetProperty("epoch").GetString();
        var ok = await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "live:x", ["since"] = new { epoch, seq = first.GetProperty("seq").GetInt64() } });
        Assert.False(ok.GetProperty("recovered").GetBoolean());
        await Assert.ThrowsAsync<TimeoutException>(() => socket.ReceiveMessageAsync(TimeSpan.FromMilliseconds(300)));
    }

    [Fact]
    public async Task HistorySize_KeepsOnlyTheNewest()
    {
        await using var socket = await ConnectAsync();
        for (var i = 1; i <= 5; i++)
        {
            await socket.RequestAsync(new() { ["type"] = "publish", ["channel"] = "short:h", ["data"] = i });
        }

        var history = await socket.RequestAsync(new() { ["type"] = "history", ["channel"] = "short:h" });
        Assert.Equal([3, 4, 5], history.GetProperty("messages").EnumerateArray().Select(static m => m.GetProperty("data").GetInt32()));

        // Seq 1 fell out of history, so resuming from it cannot be complete.
        var ok = await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "short:h", ["since"] = new { epoch = history.GetProperty("epoch").GetString(), seq = 1 } });
        Assert.False(ok.GetProperty("recovered").GetBoolean());
    }

    [Fact]
    public async Task MaxSubscribers_RefusesTheNextSubscriber42900()
    {
        await using var first = await ConnectAsync();
        await using var second = await ConnectAsync();
        Assert.Equal("ok", (await first.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "small:room" })).GetProperty("type").GetString());
        Assert.Equal(42900, (await second.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "small:room" })).GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task InvalidNamespaceOptions_StopTheHostWithAClearMessage()
    {
        var settings = new Dictionary<string, string?>
        {
            ["Relay:Namespaces:Defaults:HistorySize"] = "-1",
        };
        ConfigureBus(settings);
        var error = await Assert.ThrowsAnyAsync<Exception>(() => RelayServer.StartAsync(settings));
        Assert.Contains("HistorySize", error.Message, StringComparison.Ordinal);
    }
}

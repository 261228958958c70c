using System.Net;
using Relay.Testing;

namespace Relay.Services.Tests.WebSockets;

/// <summary>With Relay's own transport off, realtime goes through ASP.NET Core's WebSocket and behaves the same.</summary>
public abstract class FrameworkWebSocketSpec : IAsyncLifetime
{
    private RelayServer _server = null!;

    public async Task InitializeAsync()
    {
        var settings = new Dictionary<string, string?> { ["Relay:Ingress:OwnTransport"] = "false" };
        ConfigureBus(settings);
        _server = await StartServerAsync(settings);
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    /// <summary>
    /// Lets a variant start the server beside what its bus needs (a Dapr sidecar, attached once the server listens);
    /// none means the server alone.
    /// </summary>
    protected virtual Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings) => RelayServer.StartAsync(settings);

    /// <summary>Lets a variant put the server on another bus; none means the in-memory bus.</summary>
    protected virtual void ConfigureBus(IDictionary<string, string?> settings)
    {
    }

    [Fact]
    public async Task PublishSubscribe_AndRefusedUpgrade_WorkWithoutTheOwnTransport()
    {
        await using var subscriber = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key), "relay.v1.json");
        Assert.Equal("relay.v1.json", subscriber.Socket.SubProtocol);
        await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "fw" });
        await using var publisher = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "fw", ["data"] = 7 });
        Assert.Equal(7, (await subscriber.ReceiveMessageAsync()).GetProperty("data").GetInt32());
        Assert.Equal(HttpStatusCode.Unauthorized, await TestSocket.RefusedUpgradeAsync(new Uri(_server.RealtimeUri + "?key=test.root:wrong-secret-000000000")));
    }
}

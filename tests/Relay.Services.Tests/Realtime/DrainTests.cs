using System.Diagnostics;
using Relay.Core.Protocol;
using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary>
/// A node that stops with <c>Relay:Ingress:DrainTimeout</c> tells every client to go (<c>disconnect</c> 50300 with
/// <c>reconnect: true</c>, "node draining"), after what was already queued for it, and stops once they have gone,
/// without waiting out the drain time; without it, connections are cut with no word.
/// </summary>
public sealed class DrainTests
{
    [Fact]
    public async Task Stopping_WithADrainTime_TellsWebSocketAndSseClientsToReconnect_AndEndsWhenTheyHaveGone()
    {
        var server = await RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Ingress:DrainTimeout"] = "00:00:20" });
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        Assert.Equal("ok", (await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "drain" })).GetProperty("type").GetString());
        await using var stream = await SseTestClient.OpenAsync(new Uri(server.BaseAddress, $"v1/sse?key={Uri.EscapeDataString(RelayServer.Key)}&channel=drain"));
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        Assert.Equal("ok", (await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "drain", ["data"] = "last" })).GetProperty("type").GetString());

        var clock = Stopwatch.StartNew();
        var stopping = server.DisposeAsync().AsTask();
        var published = 0;

        // The WebSocket subscriber gets the message queued before the stop, then the disconnect, then the close.
        var frames = await subscriber.DrainUntilClosedAsync(TimeSpan.FromSeconds(15));
        var message = Assert.Single(frames, static f => f.GetProperty("type").GetString() == "message");
        Assert.Equal("last", message.GetProperty("data").GetString());
        var disconnect = Assert.Single(frames, static f => f.GetProperty("type").GetString() == "disconnect");
        Assert.Equal(ErrorCodes.Unavailable, disconnect.GetProperty("code").GetInt32());
        Assert.True(disconnect.GetProperty("reconnect").GetBoolean());
        Assert.Contains("draining", disconnect.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.True(frames.IndexOf(message) < frames.IndexOf(disconnect), "the disconnect overtook a queued message");

        // The SSE stream gets the same, as an event.
        Assert.Equal("last", (await stream.ReadEventAsync("message", TimeSpan.FromSeconds(15))).Json.GetProperty("data").GetString());
        var ended = (await stream.ReadEventAsync("disconnect", TimeSpan.FromSeconds(15))).Json;
        Assert.Equal(ErrorCodes.Unavailable, ended.GetProperty("code").GetInt32());
        Assert.True(ended.GetProperty("reconnect").GetBoolean());

        // The publisher is told too; once everyone has gone the node stops, well before the 20 s drain time.
        published += (await publisher.DrainUntilClosedAsync(TimeSpan.FromSeconds(15))).Count(static f => f.GetProperty("type").GetString() == "disconnect");
        Assert.Equal(1, published);
        await stopping.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(15), $"stopping took {clock.Elapsed.TotalSeconds:0.0} s");
    }

    [Fact]
    public async Task Stopping_WithoutADrainTime_CutsConnectionsWithNoDisconnect()
    {
        var server = await RelayServer.StartAsync();
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        Assert.Equal("ok", (await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "cut" })).GetProperty("type").GetString());

        await server.DisposeAsync();
        var frames = await subscriber.DrainUntilClosedAsync(TimeSpan.FromSeconds(15));
        Assert.DoesNotContain(frames, static f => f.GetProperty("type").GetString() == "disconnect");
    }
}

using System.Net;
using Microsoft.Extensions.Options;
using Relay.Testing;

namespace Relay.Services.Tests.Pusher;

/// <summary>The activity timeout and start-up checks, each on a server of its own settings.</summary>
public sealed class PusherLimitsTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task ActivityTimeout_QuietClientPingedThenClosed4201_AnsweringClientStays()
    {
        await using var server = await PusherServerFixture.StartServerAsync(("Relay:Pusher:ActivityTimeoutSeconds", "1"), ("Relay:Pusher:PongTimeoutSeconds", "2"));
        await using var quiet = await PusherSocket.ConnectAsync(server, "test.root", Timeout);
        await using var answering = await PusherSocket.ConnectAsync(server, "test.root", Timeout);
        Assert.Equal(1, quiet.Established.GetProperty("activity_timeout").GetInt32());

        var answered = Task.Run(async () =>
        {
            // Answers every ping for 8 s (a ping about every 2 s: the 1 s timeout and the node's once-a-second check), each within the 2 s.
            var pings = 0;
            var until = DateTime.UtcNow.AddSeconds(8);
            while (DateTime.UtcNow < until)
            {
                await answering.ReceiveAsync("pusher:ping", Timeout);
                await answering.SendAsync("""{"event":"pusher:pong","data":{}}""");
                pings++;
            }

            return pings;
        });

        await quiet.ReceiveAsync("pusher:ping", Timeout);
        Assert.Equal(4201, await quiet.ClosedAsync(Timeout));

        Assert.True(await answered.WaitAsync(Timeout) >= 2);
        await answering.SendAsync("""{"event":"pusher:ping","data":{}}""");
        await answering.ReceiveAsync("pusher:pong", Timeout);
        Assert.Null(answering.CloseStatus);
    }

    [Theory]
    [InlineData("Relay:Pusher:ActivityTimeoutSeconds", "0")]
    [InlineData("Relay:Pusher:MaxEventBytes", "0")]
    [InlineData("Relay:Pusher:MaxChannelsPerEvent", "0")]
    [InlineData("Relay:Pusher:TimestampToleranceSeconds", "-5")]
    [InlineData("Relay:Pusher:ClientEventsPerSecond", "0")]
    [InlineData("Relay:Pusher:HttpPollSeconds", "0")]
    [InlineData("Relay:Pusher:HttpSessionTimeoutSeconds", "0")]
    [InlineData("Relay:Pusher:WebhookMaxAttempts", "0")]
    [InlineData("Relay:Pusher:Apps:test:MaxConnections", "-1")]
    [InlineData("Relay:Pusher:Apps:test:Webhooks:0:Url", "ftp://example.com/hooks")]
    [InlineData("Relay:Pusher:Apps:test:Webhooks:0:Events:0", "channel_exploded")]
    public async Task Startup_BadSetting_FailsNamingIt(string setting, string value)
    {
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => PusherServerFixture.StartServerAsync((setting, value)).WaitAsync(Timeout));
        Assert.Contains(setting, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Startup_Disabled_ServesNoPusherEndpoints()
    {
        await using var server = await PusherServerFixture.StartServerAsync(("Relay:Pusher:Enabled", "false"));
        using var http = new HttpClient { BaseAddress = server.BaseAddress };

        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync(new Uri("app/test.root?protocol=7", UriKind.Relative)).WaitAsync(Timeout)).StatusCode);
        using var request = PusherHttp.Request(server, RelayServer.Key, HttpMethod.Get, "/apps/test/channels");
        Assert.Equal(HttpStatusCode.NotFound, (await http.SendAsync(request).WaitAsync(Timeout)).StatusCode);
    }

    [Fact]
    public async Task ConnectionQuota_FortyConnectionsAtOnce_FiveServedRest4004AndAFreedPlaceReused()
    {
        const int Quota = 5;
        const int Attempts = 40;
        await using var server = await PusherServerFixture.StartServerAsync(("Relay:Pusher:Apps:test:MaxConnections", Quota.ToString(System.Globalization.CultureInfo.InvariantCulture)));

        var sockets = await Task.WhenAll(Enumerable.Range(0, Attempts).Select(_ => PusherSocket.OpenAsync(PusherSocket.UriFor(server, "test.root"), Timeout)));
        var firsts = await Task.WhenAll(sockets.Select(s => s.ReceiveAsync(Timeout)));
        var served = sockets.Where((_, i) => firsts[i].GetProperty("event").GetString() == "pusher:connection_established").ToList();
        var refused = sockets.Where((_, i) => firsts[i].GetProperty("event").GetString() == "pusher:error").ToList();
        Assert.Equal(Quota, served.Count);
        Assert.Equal(Attempts - Quota, refused.Count);
        Assert.All(firsts.Where(static f => f.GetProperty("event").GetString() == "pusher:error"), static f => Assert.Equal(4004, f.GetProperty("data").GetProperty("code").GetInt32()));
        foreach (var socket in refused)
        {
            Assert.Equal(4004, await socket.ClosedAsync(Timeout));
        }

        // The other apps are not counted against it, and a closed connection frees its place.
        await using var other = await PusherSocket.ConnectAsync(server, "other.root", Timeout);
        await served[0].DisposeAsync();
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            await using var again = await PusherSocket.OpenAsync(PusherSocket.UriFor(server, "test.root"), Timeout);
            if ((await again.ReceiveAsync(Timeout)).GetProperty("event").GetString() == "pusher:connection_established")
            {
                break;
            }

            Assert.True(DateTime.UtcNow < deadline, "a closed connection's place was never freed");
            await Task.Delay(100);
        }

        foreach (var socket in sockets)
        {
            await socket.DisposeAsync();
        }
    }

    [Fact]
    public async Task DisabledApp_Connection_Refused4003()
    {
        await using var server = await PusherServerFixture.StartServerAsync(("Relay:Pusher:Apps:test:Enabled", "false"));

        await using var socket = await PusherSocket.OpenAsync(PusherSocket.UriFor(server, "test.root"), Timeout);
        var error = await socket.ReceiveAsync(Timeout);
        Assert.Equal("pusher:error", error.GetProperty("event").GetString());
        Assert.Equal(4003, error.GetProperty("data").GetProperty("code").GetInt32());
        Assert.Equal(4003, await socket.ClosedAsync(Timeout));
        await using var other = await PusherSocket.ConnectAsync(server, "other.root", Timeout);
    }

    [Fact]
    public async Task ClientEvents_FiftyBackToBack_AboutTenPassRest4301ThenTenASecond()
    {
        const int Sent = 50;
        await using var server = await PusherServerFixture.StartServerAsync();
        var channel = "private-rate-" + Guid.NewGuid().ToString("N")[..12];
        await using var sender = await PusherSocket.ConnectAsync(server, "test.root", Timeout);
        await using var receiver = await PusherSocket.ConnectAsync(server, "test.root", Timeout);
        foreach (var socket in new[] { sender, receiver })
        {
            await socket.SubscribeAsync(channel, PusherSocket.Auth(RelayServer.Key, socket.SocketId + ":" + channel));
            await socket.ReceiveAsync("pusher_internal:subscription_succeeded", Timeout);
        }

        for (var i = 1; i <= Sent; i++)
        {
            await sender.SendAsync(new { @event = "client-n", channel, data = new { i } });
        }

        // The refusals come back in order with the ping's pong after them; what passed reaches the other subscriber.
        await sender.SendAsync("""{"event":"pusher:ping","data":{}}""");
        var refused = 0;
        while (true)
        {
            var frame = await sender.ReceiveAsync(Timeout);
            if (frame.GetProperty("event").GetString() == "pusher:pong")
            {
                break;
            }

            Assert.Equal(4301, frame.GetProperty("data").GetProperty("code").GetInt32());
            refused++;
        }

        // 10 at once, plus what a second refills while the 50 are read (a busy machine may take a while).
        Assert.InRange(Sent - refused, 10, 20);
        for (var i = 0; i < Sent - refused; i++)
        {
            await receiver.ReceiveAsync("client-n", Timeout);
        }

        await Task.Delay(TimeSpan.FromSeconds(1.2));
        await sender.SendAsync(new { @event = "client-n", channel, data = new { i = "after" } });
        Assert.Contains("after", (await receiver.ReceiveAsync("client-n", Timeout)).GetProperty("data").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task EventSize_ConfiguredLimitAtRate_EveryOverOneRefusedEveryFittingOnePasses()
    {
        const int Pairs = 40;
        await using var server = await PusherServerFixture.StartServerAsync(("Relay:Pusher:MaxEventBytes", "1000"), ("Relay:Pusher:ClientEventsPerSecond", "1000"));
        var channel = "private-size-" + Guid.NewGuid().ToString("N")[..12];
        await using var sender = await PusherSocket.ConnectAsync(server, "test.root", Timeout);
        await using var receiver = await PusherSocket.ConnectAsync(server, "test.root", Timeout);
        foreach (var socket in new[] { sender, receiver })
        {
            await socket.SubscribeAsync(channel, PusherSocket.Auth(RelayServer.Key, socket.SocketId + ":" + channel));
            await socket.ReceiveAsync("pusher_internal:subscription_succeeded", Timeout);
        }

        for (var i = 0; i < Pairs; i++)
        {
            await sender.SendAsync(new { @event = "client-fits", channel, data = i.ToString("D3", System.Globalization.CultureInfo.InvariantCulture) + new string('a', 997) });
            await sender.SendAsync(new { @event = "client-over", channel, data = new string('b', 1001) });
        }

        await sender.SendAsync("""{"event":"pusher:ping","data":{}}""");
        var refused = 0;
        while ((await sender.ReceiveAsync(Timeout)) is var frame && frame.GetProperty("event").GetString() != "pusher:pong")
        {
            Assert.Equal(4301, frame.GetProperty("data").GetProperty("code").GetInt32());
            refused++;
        }

        Assert.Equal(Pairs, refused);
        for (var i = 0; i < Pairs; i++)
        {
            var got = await receiver.ReceiveAsync(Timeout);
            Assert.Equal("client-fits", got.GetProperty("event").GetString());
            Assert.StartsWith(i.ToString("D3", System.Globalization.CultureInfo.InvariantCulture), got.GetProperty("data").GetString(), StringComparison.Ordinal);
        }

        // The HTTP API: twenty over-size events at once, all 413; one that fits, 200.
        using var http = new HttpClient();
        var over = await Task.WhenAll(Enumerable.Range(0, 20).Select(async _ =>
        {
            using var response = await http.SendAsync(PusherHttp.Request(server, RelayServer.Key, HttpMethod.Post, "/apps/test/events", System.Text.Json.JsonSerializer.Serialize(new { name = "big", channel, data = new string('c', 1001) }))).WaitAsync(Timeout);
            return response.StatusCode;
        }));
        Assert.All(over, static status => Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status));
        using var fits = await http.SendAsync(PusherHttp.Request(server, RelayServer.Key, HttpMethod.Post, "/apps/test/events", System.Text.Json.JsonSerializer.Serialize(new { name = "ok", channel, data = new string('c', 1000) }))).WaitAsync(Timeout);
        Assert.Equal(HttpStatusCode.OK, fits.StatusCode);
    }
}

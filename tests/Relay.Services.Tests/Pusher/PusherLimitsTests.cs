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
        var settings = PusherServerFixture.Settings();
        settings["Relay:Pusher:ActivityTimeoutSeconds"] = "1";
        settings["Relay:Pusher:PongTimeoutSeconds"] = "2";
        await using var server = await RelayServer.StartAsync(settings);
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
    [InlineData("Relay:Pusher:WebhookMaxAttempts", "0")]
    [InlineData("Relay:Pusher:Apps:test:Webhooks:0:Url", "ftp://example.com/hooks")]
    [InlineData("Relay:Pusher:Apps:test:Webhooks:0:Events:0", "channel_exploded")]
    public async Task Startup_BadSetting_FailsNamingIt(string setting, string value)
    {
        var settings = PusherServerFixture.Settings();
        settings[setting] = value;

        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(settings).WaitAsync(Timeout));
        Assert.Contains(setting, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Startup_Disabled_ServesNoPusherEndpoints()
    {
        var settings = PusherServerFixture.Settings();
        settings["Relay:Pusher:Enabled"] = "false";
        await using var server = await RelayServer.StartAsync(settings);
        using var http = new HttpClient { BaseAddress = server.BaseAddress };

        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync(new Uri("app/test.root?protocol=7", UriKind.Relative)).WaitAsync(Timeout)).StatusCode);
        using var request = PusherHttp.Request(server, RelayServer.Key, HttpMethod.Get, "/apps/test/channels");
        Assert.Equal(HttpStatusCode.NotFound, (await http.SendAsync(request).WaitAsync(Timeout)).StatusCode);
    }
}

using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Relay.Bus.Redis;
using Relay.Core.Messages;
using Relay.Testing;

namespace Relay.Services.Tests.Distributed;

/// <summary>
/// The node's quiet check (<c>Relay:Ingress:QuietCheckAfter</c>): a last message lost with nothing after it to show a
/// jump, and no resync notice, still reaches the subscriber once the channel has been quiet for the check's time.
/// </summary>
public sealed class QuietCheckTests(RedisBusServerFixture fixture) : IClassFixture<RedisBusServerFixture>
{
    [Fact]
    public async Task ALostLastMessage_WithNoLaterMessageAndNoResync_IsReadBack_OnceTheChannelHasBeenQuiet()
    {
        var server = fixture.Server;
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "quiet-tail" });
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "quiet-tail", ["data"] = "one" });
        Assert.Equal(1, (await subscriber.ReceiveMessageAsync()).GetProperty("seq").GetInt64());

        // Seq 2 is stored but its hop is lost; nothing follows it and no fan-out process announces a resync. The node's
        // quiet check (Relay:Ingress:QuietCheckAfter, 2 s) asks the channel's position and reads it back.
        var bus = server.Services.GetRequiredService<RedisBus>();
        var body = BusCodec.EncodeBody(new RelayMessage { App = RelayServer.AppId, Channel = "quiet-tail", Epoch = "", Data = Encoding.UTF8.GetBytes("\"two\"") });
        await new RedisChannelLog(bus.Database).AppendAsync(RelayServer.AppId, "quiet-tail", id: null, body, maxHistory: 200, TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(2));

        var message = await subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(2, message.GetProperty("seq").GetInt64());
        Assert.Equal("two", message.GetProperty("data").GetString());
    }
}

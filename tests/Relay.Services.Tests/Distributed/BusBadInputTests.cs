using Microsoft.Extensions.DependencyInjection;
using Relay.Bus.Redis;
using Relay.Ingress;
using StackExchange.Redis;
using Relay.Testing;

namespace Relay.Services.Tests.Distributed;

/// <summary>
/// Anything can PUBLISH on a Redis channel: garbage on every bus channel is dropped (and logged) by whoever listens,
/// and the services go on as before.
/// </summary>
public sealed class BusBadInputTests(RedisBusServerFixture fixture) : IClassFixture<RedisBusServerFixture>
{
    [Fact]
    public async Task GarbageOnEveryBusChannel_IsDropped_AndPublishSubscribeGoesOn()
    {
        var server = fixture.Server;
        var bus = server.Services.GetRequiredService<RedisBus>();
        var node = server.Services.GetRequiredService<IngressNode>();
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "sturdy" });

        List<RedisChannel> channels = [RedisKeys.Node(node.NodeId), RedisKeys.Reply(bus.InstanceId)];
        channels.AddRange(Enumerable.Range(0, 16).Select(RedisKeys.FanOutShard));
        channels.AddRange(Enumerable.Range(0, 16).Select(RedisKeys.Shard));
        byte[][] garbage =
        [
            [],
            "not json at all"u8.ToArray(),
            "{\"r\":1}"u8.ToArray(),
            "1:2:e::{\"a\":\"test\"}"u8.ToArray(),
            "9:9:e::{\"a\":\"test\",\"c\":\"sturdy\",\"d\":"u8.ToArray(),
            [0, 0, 0, 200, 1, 2, 3],
            [0xff, 0xfe, 0x00, 0x01],
        ];
        foreach (var channel in channels)
        {
            foreach (var frame in garbage)
            {
                await bus.Database.PublishAsync(channel, frame);
            }
        }

        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        for (var i = 1; i <= 3; i++)
        {
            var ack = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "sturdy", ["data"] = i });
            Assert.Equal("ok", ack.GetProperty("type").GetString());
            var message = await subscriber.ReceiveMessageAsync();
            Assert.Equal(i, message.GetProperty("data").GetInt32());
            Assert.Equal(ack.GetProperty("seq").GetInt64(), message.GetProperty("seq").GetInt64());
        }
    }
}

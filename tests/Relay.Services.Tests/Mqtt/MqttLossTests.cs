using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Relay.Bus.Redis;
using Relay.Core.Messages;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// Messages lost between services (stored, never handed to the node, and gone from history before the node could read
/// them back): a subscriber at QoS 1 was promised every message, so its connection ends before the jump (MQTT 5:
/// DISCONNECT 0x80 with a reason string; 3.1.1: closed) and it sees nothing past it on that connection; a QoS 0 subscriber
/// was promised at most once and goes on. Simulated as GapRepairTests do: messages appended to the channel's log
/// without fan-out, with a history of 3.
/// </summary>
public sealed class MqttLossTests(RedisBusServerWithoutQuietCheckFixture fixture) : IClassFixture<RedisBusServerWithoutQuietCheckFixture>
{
    private readonly RelayServer _server = fixture.Server;

    [Fact]
    public async Task Lost_QosOneSubscribers_DisconnectedBeforeTheJump_QosZeroGoesOn()
    {
        var channel = $"mqtt-lossy/{Guid.NewGuid():N}";
        await using var v5 = await SubscribedAsync(5, "loss-v5", channel, qos: 1);
        await using var v5Pattern = await SubscribedAsync(5, "loss-v5-pattern", channel[..channel.IndexOf('/', StringComparison.Ordinal)] + "/+", qos: 1);
        await using var v311 = await SubscribedAsync(4, "loss-v311", channel, qos: 1);
        await using var atMostOnce = await SubscribedAsync(5, "loss-qos0", channel, qos: 0);
        await using var publisher = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = channel, ["data"] = 1 });
        foreach (var client in new[] { v5, v5Pattern, v311, atMostOnce })
        {
            Assert.Equal("1", PayloadOf(await client.ReadPacketAsync(), client == v311 ? (byte)4 : (byte)5));
        }

        // Seqs 2..11 are stored but never handed to fan-out, and history keeps only 9..11: 2..8 are gone.
        var bus = _server.Services.GetRequiredService<RedisBus>();
        var log = new RedisChannelLog(bus.Database);
        for (var i = 2; i <= 11; i++)
        {
            var body = BusCodec.EncodeBody(new RelayMessage { App = RelayServer.AppId, Channel = channel, Epoch = "", Data = Encoding.UTF8.GetBytes($"{i}") });
            await log.AppendAsync(RelayServer.AppId, channel, id: null, body, maxHistory: 3, TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(2));
        }

        Assert.Equal(12, (await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = channel, ["data"] = 12 })).GetProperty("seq").GetInt64());

        foreach (var client in new[] { v5, v5Pattern })
        {
            var packets = await client.ReadUntilClosedAsync();
            Assert.DoesNotContain(packets, p => p.First >> 4 == 3);
            var disconnect = Assert.Single(packets);
            Assert.Equal((byte)0xE0, disconnect.First);
            Assert.Equal((byte)0x80, disconnect.Body[0]);
            Assert.Contains("lost", Encoding.UTF8.GetString(disconnect.Body), StringComparison.Ordinal);
        }

        Assert.Empty(await v311.ReadUntilClosedAsync());

        // At most once: the readable 9..11 and then 12, on the same connection.
        var rest = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            rest.Add(PayloadOf(await atMostOnce.ReadPacketAsync(), 5));
        }

        Assert.Equal(["9", "10", "11", "12"], rest);
    }

    private async Task<RawMqttClient> SubscribedAsync(byte level, string clientId, string filter, byte qos)
    {
        var client = await RawMqttClient.OpenAsync(_server);
        await client.ConnectAsync(level, clientId + "-" + Guid.NewGuid().ToString("N")[..8]);
        var topic = Encoding.UTF8.GetBytes(filter);
        byte[] properties = level == 5 ? [0] : [];
        byte[] body = [0x00, 0x01, .. properties, (byte)(topic.Length >> 8), (byte)topic.Length, .. topic, qos];
        await client.SendAsync([0x82, (byte)body.Length, .. body]);
        var subAck = await client.ReadPacketAsync();
        Assert.Equal((byte)0x90, subAck?.First);
        Assert.Equal(qos, subAck!.Value.Body[^1]);
        return client;
    }

    // A PUBLISH's payload as text: after the topic, the packet id (QoS 1) and MQTT 5's properties (none are sent).
    private static string PayloadOf((byte First, byte[] Body)? packet, byte level)
    {
        Assert.NotNull(packet);
        var (first, body) = packet.Value;
        Assert.Equal(3, first >> 4);
        var at = 2 + ((body[0] << 8) | body[1]) + (((first >> 1) & 3) > 0 ? 2 : 0) + (level == 5 ? 1 : 0);
        return Encoding.UTF8.GetString(body.AsSpan(at));
    }
}

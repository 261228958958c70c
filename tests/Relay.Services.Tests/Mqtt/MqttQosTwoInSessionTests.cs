using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// The client's QoS 2 publishes answered PUBREC and awaiting PUBREL are session state (MQTT 3.1.1/5 §4.1, §4.3.3): a
/// persistent session's next connection that sends one again is answered PUBREC and it is not published again, its
/// PUBREL gets PUBCOMP; a clean start forgets them. Raw clients send the packets and drop the connection; a subscriber
/// counts deliveries up to a marker published after.
/// </summary>
public sealed class MqttQosTwoInSessionTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly RelayServer _server = fixture.Server;

    [Theory]
    [InlineData((byte)4, true)]
    [InlineData((byte)5, true)]
    [InlineData((byte)4, false)]
    [InlineData((byte)5, false)]
    public async Task Qos2Publish_ConnectionDropped_ResentOnResumedSession_PubRecNotPublishedAgain_PubRelPubComp(byte level, bool pubRecRead)
    {
        var (clientId, topic) = Names(level);
        await using var subscriber = await SubscribedAsync(_server, topic);

        // PUBLISH id 7, then the connection drops: after its PUBREC, or before the client read it (the first copy may
        // have been published or not: one delivery either way).
        await using (var first = await RawMqttClient.OpenAsync(_server))
        {
            Assert.False(await first.ConnectAsync(level, clientId, sessionExpiry: 600, timeout: Timeout));
            await first.SendAsync(RawMqttClient.QosTwoPublish(topic, 7, payload: "first", level: level));
            if (pubRecRead)
            {
                Assert.Equal(0, await first.ExpectAckAsync(0x50, 7, Timeout));
            }
        }

        await using var again = await RawMqttClient.OpenAsync(_server);
        Assert.True(await again.ConnectAsync(level, clientId, sessionExpiry: 600, timeout: Timeout));
        await ResendAndReleaseAsync(again, topic, level);
        await MarkAsync(again, topic, level);
        Assert.Equal(["first", "marker"], await subscriber.PayloadsUntilAsync("marker", Timeout));
    }

    [Theory]
    [InlineData((byte)4)]
    [InlineData((byte)5)]
    public async Task Qos2AwaitingPubRel_ReconnectWithCleanStart_SamePacketIdIsANewMessage(byte level)
    {
        var (clientId, topic) = Names(level);
        await using var subscriber = await SubscribedAsync(_server, topic);
        await using (var first = await RawMqttClient.OpenAsync(_server))
        {
            Assert.False(await first.ConnectAsync(level, clientId, sessionExpiry: 600, timeout: Timeout));
            await first.SendAsync(RawMqttClient.QosTwoPublish(topic, 7, payload: "first", level: level));
            Assert.Equal(0, await first.ExpectAckAsync(0x50, 7, Timeout));
        }

        // Clean session / Clean Start 1: no session present, packet id 7 is free again.
        await using var clean = await RawMqttClient.OpenAsync(_server);
        Assert.False(await clean.ConnectAsync(level, clientId, timeout: Timeout));
        await clean.SendAsync(RawMqttClient.QosTwoPublish(topic, 7, payload: "second", level: level));
        Assert.Equal(0, await clean.ExpectAckAsync(0x50, 7, Timeout));
        await clean.SendAsync([0x62, 2, 0, 7]);
        Assert.Equal(0, await clean.ExpectAckAsync(0x70, 7, Timeout));
        await MarkAsync(clean, topic, level);
        Assert.Equal(["first", "second", "marker"], await subscriber.PayloadsUntilAsync("marker", Timeout));
    }

    [Fact]
    public async Task Qos2AwaitingPubRel_RestoredOnReconnect_CountsTowardReceiveMaximumUntilReleased()
    {
        var settings = ServerFixture.Settings();
        settings["Relay:Mqtt:ReceiveMaximum"] = "2";
        await using var server = await RelayServer.StartAsync(settings);
        var (clientId, topic) = Names(5);
        await using (var first = await RawMqttClient.OpenAsync(server))
        {
            Assert.False(await first.ConnectAsync(5, clientId, sessionExpiry: 600, timeout: Timeout));
            await first.SendAsync(RawMqttClient.QosTwoPublish(topic, 7));
            await first.SendAsync(RawMqttClient.QosTwoPublish(topic, 8));
            Assert.Equal(0, await first.ExpectAckAsync(0x50, 7, Timeout));
            Assert.Equal(0, await first.ExpectAckAsync(0x50, 8, Timeout));
        }

        // 7 and 8 still hold both places: releasing 7 frees one (PUBCOMP 0, not 0x92), 9 takes it, 10 is one too many.
        await using var again = await RawMqttClient.OpenAsync(server);
        Assert.True(await again.ConnectAsync(5, clientId, sessionExpiry: 600, timeout: Timeout));
        await again.SendAsync([0x62, 2, 0, 7]);
        Assert.Equal(0, await again.ExpectAckAsync(0x70, 7, Timeout));
        await again.SendAsync(RawMqttClient.QosTwoPublish(topic, 9));
        Assert.Equal(0, await again.ExpectAckAsync(0x50, 9, Timeout));
        await again.SendAsync(RawMqttClient.QosTwoPublish(topic, 10));
        var closed = await again.ReadUntilClosedAsync(Timeout);
        Assert.Equal((byte)0x93, Assert.Single(closed, p => p.First == 0xE0).Body[0]);
    }

    /// <summary>
    /// Sends PUBLISH id 7 ("first") again with DUP on the resumed session: PUBREC, then PUBREL gets PUBCOMP 0 (MQTT 5:
    /// not 0x92, the id is known).
    /// </summary>
    internal static async Task ResendAndReleaseAsync(RawMqttClient client, string topic, byte level)
    {
        await client.SendAsync(RawMqttClient.QosTwoPublish(topic, 7, dup: true, payload: "first", level: level));
        Assert.Equal(0, await client.ExpectAckAsync(0x50, 7, Timeout));
        await client.SendAsync([0x62, 2, 0, 7]);
        Assert.Equal(0, await client.ExpectAckAsync(0x70, 7, Timeout));
    }

    /// <summary>A new QoS 2 publish ("marker", id 8) after the others: once it arrives, every copy before it has.</summary>
    internal static async Task MarkAsync(RawMqttClient client, string topic, byte level)
    {
        await client.SendAsync(RawMqttClient.QosTwoPublish(topic, 8, payload: "marker", level: level));
        Assert.Equal(0, await client.ExpectAckAsync(0x50, 8, Timeout));
        await client.SendAsync([0x62, 2, 0, 8]);
        Assert.Equal(0, await client.ExpectAckAsync(0x70, 8, Timeout));
    }

    /// <summary>An MQTT 5 subscriber of <paramref name="topic"/> at QoS 2.</summary>
    internal static async Task<MqttClients.Connected> SubscribedAsync(RelayServer server, string topic)
    {
        var subscriber = await MqttClients.ConnectAsync(server, MqttProtocolVersion.V500);
        await subscriber.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.ExactlyOnce).Build()).WaitAsync(Timeout);
        return subscriber;
    }

    internal static (string ClientId, string Topic) Names(byte level)
    {
        var clientId = $"qos2in{level}-" + Guid.NewGuid().ToString("N")[..8];
        return (clientId, $"qos2in/{clientId}");
    }
}

using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Relay.Ingress.Mqtt.Codec;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// Topic aliases Relay sends an MQTT 5 client (MQTT 5 §3.3.2.3.4), read off the wire by a raw client: a topic's first
/// delivery on a connection carries its name and a new alias, later ones the alias and an empty topic, at every QoS,
/// retained and shared deliveries too; never an alias above the client's Topic Alias Maximum, none when it announced
/// none; a reconnect starts with none. MQTTnet, which resolves aliases itself, gets every topic right.
/// </summary>
public abstract class MqttTopicAliasSpec(IServerFixture fixture)
{
    private static readonly TimeSpan Timeout = MqttClients.Timeout;

    private readonly RelayServer _server = fixture.Server;

    internal static string Topic(string prefix) => $"mqtt-alias-{prefix}/{Guid.NewGuid():N}";

    [Theory]
    [InlineData(MqttQualityOfServiceLevel.AtMostOnce)]
    [InlineData(MqttQualityOfServiceLevel.AtLeastOnce)]
    [InlineData(MqttQualityOfServiceLevel.ExactlyOnce)]
    public async Task SameTopicTwice_FirstCarriesTopicAndAlias_SecondTheAliasAlone(MqttQualityOfServiceLevel qos)
    {
        var topic = Topic("qos" + (int)qos);
        await using var subscriber = await SubscribeAsync(_server, topic, (byte)qos, topicAliasMaximum: 10);
        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        for (var i = 1; i <= 3; i++)
        {
            await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload($"m{i}").WithQualityOfServiceLevel(qos).Build()).WaitAsync(Timeout);
        }

        var first = await NextPublishAsync(subscriber);
        var second = await NextPublishAsync(subscriber);
        var third = await NextPublishAsync(subscriber);
        Assert.Equal(((byte)qos, topic, (ushort?)1, "m1"), (first.Qos, first.Topic, first.Alias, first.Payload));
        Assert.Equal(((byte)qos, string.Empty, (ushort?)1, "m2"), (second.Qos, second.Topic, second.Alias, second.Payload));
        Assert.Equal(((byte)qos, string.Empty, (ushort?)1, "m3"), (third.Qos, third.Topic, third.Alias, third.Payload));
    }

    [Fact]
    public async Task ClientAnnouncedNoTopicAliasMaximum_NoAliasEver()
    {
        var topic = Topic("none");
        await using var subscriber = await SubscribeAsync(_server, topic, 1, topicAliasMaximum: 0);
        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        for (var i = 1; i <= 3; i++)
        {
            await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload($"m{i}").WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        }

        for (var i = 1; i <= 3; i++)
        {
            var delivery = await NextPublishAsync(subscriber);
            Assert.Equal((topic, (ushort?)null, $"m{i}"), (delivery.Topic, delivery.Alias, delivery.Payload));
        }
    }

    [Fact]
    public async Task MoreTopicsThanTheClientsMaximum_AliasesUpToItOnly_TheRestWithTheirNames()
    {
        var prefix = Topic("five");
        var topics = Enumerable.Range(1, 5).Select(i => $"{prefix}/{i}").ToArray();
        await using var subscriber = await SubscribeAsync(_server, prefix + "/+", 0, topicAliasMaximum: 2);
        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);

        // Two rounds over the five topics: 1 and 2 get aliases 1 and 2, then go by them alone; 3 to 5 always by name.
        for (var round = 0; round < 2; round++)
        {
            foreach (var topic in topics)
            {
                await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload($"{round}").Build()).WaitAsync(Timeout);
            }
        }

        var seen = new List<(string Topic, ushort? Alias)>();
        for (var i = 0; i < 10; i++)
        {
            var delivery = await NextPublishAsync(subscriber);
            seen.Add((delivery.Topic, delivery.Alias));
        }

        (string, ushort?)[] expected =
        [
            (topics[0], 1), (topics[1], 2), (topics[2], null), (topics[3], null), (topics[4], null),
            (string.Empty, 1), (string.Empty, 2), (topics[2], null), (topics[3], null), (topics[4], null),
        ];
        Assert.Equal(expected, seen);
    }

    // The client's Maximum Packet Size still holds: a new alias (3 bytes) is not given to a delivery that fits only
    // without it; the topic's next delivery that fits with it gets it.
    [Fact]
    public async Task ClientMaximumPacketSize_DeliveryFitsOnlyWithoutAlias_SentByNameAndDelivered()
    {
        var topic = Topic("max");
        var full = new string('f', 20);
        var fullPacket = 2 + 2 + Encoding.UTF8.GetByteCount(topic) + 1 + full.Length; // QoS 0, no properties: under 128, one length byte
        await using var subscriber = await RawMqttClient.OpenAsync(_server);
        await subscriber.ConnectAsync(5, "alias-" + Guid.NewGuid().ToString("N")[..10], topicAliasMaximum: 3, maximumPacketSize: (uint)fullPacket);
        await SubscribeAsync(subscriber, topic, 0);
        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        foreach (var payload in new[] { full, "short", full })
        {
            await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).Build()).WaitAsync(Timeout);
        }

        var fits = await NextPublishAsync(subscriber);
        var aliased = await NextPublishAsync(subscriber);
        var byAlias = await NextPublishAsync(subscriber);
        Assert.Equal((topic, (ushort?)null, full), (fits.Topic, fits.Alias, fits.Payload));
        Assert.Equal((topic, (ushort?)1, "short"), (aliased.Topic, aliased.Alias, aliased.Payload));
        Assert.Equal((string.Empty, (ushort?)1, full), (byAlias.Topic, byAlias.Alias, byAlias.Payload));
    }

    [Fact]
    public async Task PersistentSession_Reconnect_StartsWithNoAliases_ResentDeliveryCarriesItsTopic()
    {
        var topic = Topic("resume");
        var clientId = "alias-" + Guid.NewGuid().ToString("N")[..10];
        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await using (var first = await RawMqttClient.OpenAsync(_server))
        {
            await first.ConnectAsync(5, clientId, sessionExpiry: 300, topicAliasMaximum: 4);
            await SubscribeAsync(first, topic, 1);
            await PublishAsync(publisher, topic, "acked");
            var acked = await NextPublishAsync(first);
            Assert.Equal((topic, (ushort?)1), (acked.Topic, acked.Alias));

            // Its PUBACK read by the server (packets are answered in order): a takeover that finds an acknowledgement
            // still unread in the kernel sends the message again (at least once allows it; this test is not about that).
            await first.SendAsync([0xC0, 0]);
            Assert.Equal((byte?)0xD0, (await first.ReadPacketAsync())?.First);

            // Left unacknowledged: the session sends it again on the next connection.
            await PublishAsync(publisher, topic, "unacked");
            var unacked = await NextPublishAsync(first, acknowledge: false);
            Assert.Equal((string.Empty, (ushort?)1, "unacked"), (unacked.Topic, unacked.Alias, unacked.Payload));
        }

        await using var second = await RawMqttClient.OpenAsync(_server);
        Assert.True(await second.ConnectAsync(5, clientId, sessionExpiry: 300, topicAliasMaximum: 4));
        var resent = await NextPublishAsync(second);
        Assert.Equal((true, topic, (ushort?)1, "unacked"), (resent.Dup, resent.Topic, resent.Alias, resent.Payload));
        await PublishAsync(publisher, topic, "after");
        var after = await NextPublishAsync(second);
        Assert.Equal((string.Empty, (ushort?)1, "after"), (after.Topic, after.Alias, after.Payload));

        // The session ends with this connection.
        await second.SendAsync([0xE0, 7, 0, 5, 0x11, 0, 0, 0, 0]);
    }

    [Fact]
    public async Task RetainedOnSubscribe_CarriesTopicAndAlias_LiveDeliveryAfterTheAliasAlone()
    {
        var topic = Topic("retained");
        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("kept").WithRetainFlag().WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        await using var subscriber = await SubscribeAsync(_server, topic, 1, topicAliasMaximum: 3);
        var retained = await NextPublishAsync(subscriber);
        Assert.Equal((true, topic, (ushort?)1, "kept"), (retained.Retain, retained.Topic, retained.Alias, retained.Payload));
        await PublishAsync(publisher, topic, "live");
        var live = await NextPublishAsync(subscriber);
        Assert.Equal((false, string.Empty, (ushort?)1, "live"), (live.Retain, live.Topic, live.Alias, live.Payload));

        // Cleared, so the app's retained topics do not pile up across runs.
        await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithRetainFlag().WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
    }

    [Fact]
    public async Task SharedSubscription_DeliveriesCarryTheMembersAliases()
    {
        var topic = Topic("shared");
        await using var subscriber = await SubscribeAsync(_server, $"$share/g/{topic}", 1, topicAliasMaximum: 3);
        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await PublishAsync(publisher, topic, "a");
        await PublishAsync(publisher, topic, "b");
        var first = await NextPublishAsync(subscriber);
        var second = await NextPublishAsync(subscriber);
        Assert.Equal((topic, (ushort?)1, "a"), (first.Topic, first.Alias, first.Payload));
        Assert.Equal((string.Empty, (ushort?)1, "b"), (second.Topic, second.Alias, second.Payload));
    }

    // MQTTnet 5.2 parses the aliases but does not resolve them: a message sent by alias comes out with an empty Topic and
    // its TopicAlias, for the application to map (the first message of each alias carried both). Mapped so, every
    // message has its own topic, over TCP and WebSocket.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task MqttNetClientWithTopicAliasMaximum_GetsEveryMessage_ItsTopicByNameOrAlias(bool webSocket)
    {
        var prefix = Topic("mqttnet");
        var client = new MqttClientFactory().CreateMqttClient();
        await using var subscriber = new MqttClients.Connected(client);
        await client.ConnectAsync(MqttClients.Options(_server, MqttProtocolVersion.V500, webSocket: webSocket).WithTopicAliasMaximum(2).Build()).WaitAsync(Timeout);
        await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(prefix + "/#", MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        var sent = new List<(string, string)>();
        for (var i = 0; i < 12; i++)
        {
            var topic = $"{prefix}/{i % 3}";
            await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload($"{i}").WithQualityOfServiceLevel((MqttQualityOfServiceLevel)(i % 2)).Build()).WaitAsync(Timeout);
            sent.Add((topic, $"{i}"));
        }

        var received = new List<(string, string)>();
        var aliases = new Dictionary<ushort, string>();
        var byAlias = 0;
        for (var i = 0; i < 12; i++)
        {
            var message = await subscriber.NextAsync();
            var topic = message.Topic;
            if (message.TopicAlias != 0)
            {
                if (string.IsNullOrEmpty(topic))
                {
                    topic = aliases[message.TopicAlias];
                    byAlias++;
                }
                else
                {
                    aliases.Add(message.TopicAlias, topic);
                }
            }

            received.Add((topic, Encoding.UTF8.GetString(message.Payload)));
        }

        Assert.Equal(sent, received);

        // Topics 0 and 1 took the client's two aliases; topic 2 always came by name.
        Assert.Equal([$"{prefix}/0", $"{prefix}/1"], aliases.OrderBy(static a => a.Key).Select(static a => a.Value));
        Assert.Equal(6, byAlias);
    }

    /// <summary>A delivered PUBLISH as read off the wire: its topic as sent (empty with a known alias) and its Topic Alias property.</summary>
    internal sealed record Delivery(byte Qos, bool Dup, bool Retain, string Topic, ushort PacketId, ushort? Alias, string Payload);

    /// <summary>A raw MQTT 5 client connected with <paramref name="topicAliasMaximum"/> and subscribed to <paramref name="filter"/>.</summary>
    internal static async Task<RawMqttClient> SubscribeAsync(RelayServer server, string filter, byte qos, ushort topicAliasMaximum)
    {
        var client = await RawMqttClient.OpenAsync(server);
        await client.ConnectAsync(5, "alias-" + Guid.NewGuid().ToString("N")[..10], topicAliasMaximum: topicAliasMaximum);
        await SubscribeAsync(client, filter, qos);
        return client;
    }

    private static async Task SubscribeAsync(RawMqttClient client, string filter, byte qos)
    {
        await client.SendAsync(RawMqttClient.Subscribe(filter, qos, level: 5));
        var subAck = await client.ReadPacketAsync() ?? throw new InvalidOperationException("closed before SUBACK");
        Assert.Equal((byte)0x90, subAck.First);
        Assert.Equal(qos, subAck.Body[^1]);
    }

    private static Task PublishAsync(MqttClients.Connected publisher, string topic, string payload) =>
        publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);

    /// <summary>
    /// The next PUBLISH, acknowledged (QoS 1: PUBACK; QoS 2: PUBREC, and the PUBREL that follows with PUBCOMP) unless
    /// <paramref name="acknowledge"/> is false.
    /// </summary>
    internal static async Task<Delivery> NextPublishAsync(RawMqttClient client, bool acknowledge = true, TimeSpan? timeout = null)
    {
        while (true)
        {
            var (first, body) = await client.ReadPacketAsync(timeout) ?? throw new InvalidOperationException("closed before the next PUBLISH");
            if (first == 0x62)
            {
                await client.SendAsync([0x70, 2, body[0], body[1]]);
                continue;
            }

            Assert.True(first >> 4 == 3, $"expected PUBLISH, got 0x{first:X2} {Convert.ToHexString(body)}");
            var delivery = Parse(first, body);
            if (acknowledge && delivery.Qos > 0)
            {
                await client.SendAsync([delivery.Qos == 1 ? (byte)0x40 : (byte)0x50, 2, (byte)(delivery.PacketId >> 8), (byte)delivery.PacketId]);
            }

            return delivery;
        }
    }

    // An MQTT 5 PUBLISH body: topic, packet id (QoS 1 and 2), properties (those Relay may send on these tests' messages), payload.
    private static Delivery Parse(byte first, byte[] body)
    {
        var qos = (byte)((first >> 1) & 3);
        var topicLength = BinaryPrimitives.ReadUInt16BigEndian(body);
        var topic = Encoding.UTF8.GetString(body, 2, topicLength);
        var at = 2 + topicLength;
        ushort packetId = 0;
        if (qos > 0)
        {
            packetId = BinaryPrimitives.ReadUInt16BigEndian(body.AsSpan(at));
            at += 2;
        }

        var propertiesLength = MqttPublishFrame.ReadVariableInt(body.AsSpan(at), out var lengthBytes);
        at += lengthBytes;
        var end = at + propertiesLength;
        ushort? alias = null;
        while (at < end)
        {
            switch (body[at++])
            {
                case 0x23:
                    Assert.Null(alias);
                    alias = BinaryPrimitives.ReadUInt16BigEndian(body.AsSpan(at));
                    at += 2;
                    break;
                case 0x0B:
                    MqttPublishFrame.ReadVariableInt(body.AsSpan(at), out var identifierBytes);
                    at += identifierBytes;
                    break;
                case var other:
                    throw new InvalidOperationException($"unexpected property 0x{other:X2} in {Convert.ToHexString(body)}");
            }
        }

        return new Delivery(qos, (first & 0x08) != 0, (first & 0x01) != 0, topic, packetId, alias, Encoding.UTF8.GetString(body, end, body.Length - end));
    }
}

/// <summary>Topic aliases on the bare socket (the default transport), and what needs a node of its own.</summary>
public sealed class MqttTopicAliasTests(ServerFixture fixture) : MqttTopicAliasSpec(fixture), IClassFixture<ServerFixture>
{
    private static readonly TimeSpan Timeout = MqttClients.Timeout;

    [Fact]
    public async Task SettingZero_ClientAnnouncesAliases_NoneSent()
    {
        var settings = ServerFixture.Settings();
        settings["Relay:Mqtt:MaxServerTopicAliases"] = "0";
        await using var server = await RelayServer.StartAsync(settings);
        var topic = Topic("off");
        await using var subscriber = await SubscribeAsync(server, topic, 0, topicAliasMaximum: 10);
        await using var publisher = await MqttClients.ConnectAsync(server, MqttProtocolVersion.V500);
        for (var i = 0; i < 2; i++)
        {
            await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload($"{i}").Build()).WaitAsync(Timeout);
            var delivery = await NextPublishAsync(subscriber);
            Assert.Equal((topic, (ushort?)null), (delivery.Topic, delivery.Alias));
        }
    }

    // A fan-out at the rate a raw publisher sends, QoS 0 and 1 mixed over four topics, to a subscriber with aliases (its
    // deliveries through the write loop) and one without (QoS 0 ones straight into the send buffer) at once, on the bare
    // socket: each gets every message, in order, and resolves every topic right.
    [Fact]
    public async Task FanOutAtRate_AliasAndPlainSubscribers_EveryMessageInOrderWithItsTopic()
    {
        const int Count = 4_000;
        var prefix = Topic("fan");
        var topics = Enumerable.Range(0, 4).Select(i => $"{prefix}/{i}").ToArray();
        await using var server = await MqttDeliveryOrderTests.StartAsync(bareSocket: true);
        await using var aliased = await SubscribeAsync(server, prefix + "/+", 1, topicAliasMaximum: 3);
        await using var plain = await SubscribeAsync(server, prefix + "/+", 1, topicAliasMaximum: 0);
        var reading = new[] { ReadAllAsync(aliased), ReadAllAsync(plain) };

        await using var publisher = await RawMqttClient.OpenAsync(server);
        await publisher.ConnectAsync(4, "fan-pub-" + Guid.NewGuid().ToString("N")[..8]);
        var publishes = new List<byte>();
        for (var n = 1; n <= Count; n++)
        {
            publishes.AddRange(MqttDeliveryOrderTests.Publishes(topics[n % 4], n, 1, static n => n % 3 == 0 ? (byte)1 : (byte)0, payloadBytes: 0));
        }

        await publisher.SendAsync([.. publishes]);
        var (aliasedSeen, aliasesUsed) = await reading[0];
        var (plainSeen, noAliases) = await reading[1];
        var expected = Enumerable.Range(1, Count).Select(n => (n, topics[n % 4])).ToList();
        Assert.Equal(expected, aliasedSeen);
        Assert.Equal(expected, plainSeen);
        Assert.Equal(new ushort[] { 1, 2, 3 }, aliasesUsed.Order());
        Assert.Empty(noAliases);

        async Task<(List<(int, string)> Seen, HashSet<ushort> Aliases)> ReadAllAsync(RawMqttClient client)
        {
            var seen = new List<(int, string)>();
            var aliases = new Dictionary<ushort, string>();
            while (seen.Count < Count)
            {
                var delivery = await NextPublishAsync(client, timeout: TimeSpan.FromSeconds(30));
                var topic = delivery.Topic;
                if (delivery.Alias is { } alias)
                {
                    if (topic.Length > 0)
                    {
                        aliases.Add(alias, topic);
                    }
                    else
                    {
                        topic = aliases[alias];
                    }
                }

                seen.Add((int.Parse(delivery.Payload, CultureInfo.InvariantCulture), topic));
            }

            return (seen, [.. aliases.Keys]);
        }
    }
}

/// <summary>Topic aliases on Kestrel's socket transport (<c>Relay:Mqtt:OwnTransport=false</c>).</summary>
public sealed class MqttTopicAliasKestrelTests(KestrelTransportServerFixture fixture) : MqttTopicAliasSpec(fixture), IClassFixture<KestrelTransportServerFixture>;

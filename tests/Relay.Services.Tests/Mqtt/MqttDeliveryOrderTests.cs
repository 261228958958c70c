using System.Buffers;
using System.Text;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// One topic's messages in the order published, at the rates devices publish, on Kestrel's transport and on the bare
/// socket (<c>Relay:Mqtt:OwnTransport</c>), whose QoS 0 deliveries skip the connection's queue and write loop when
/// nothing waits ahead of them. Each test runs its own node with a publish rate far above the default 100/s.
/// </summary>
public sealed class MqttDeliveryOrderTests
{
    private static readonly TimeSpan Timeout = MqttClients.Timeout;

    private static string Topic(string prefix) => $"mqtt-{prefix}/{Guid.NewGuid():N}";

    /// <summary>A node on the transport named whose publish rate is far above the default 100/s, with <paramref name="settings"/> besides.</summary>
    internal static Task<RelayServer> StartAsync(bool bareSocket, Dictionary<string, string?>? settings = null)
    {
        settings ??= ServerFixture.Settings();
        settings["Relay:Mqtt:OwnTransport"] = bareSocket ? "true" : "false";
        settings["Relay:Ingress:PublishRatePerSecond"] = "100000";
        return RelayServer.StartAsync(settings);
    }

    // On the bare socket a QoS 0 delivery goes from the publisher's thread straight into the subscriber's send buffer when
    // nothing is queued ahead of it, while QoS 1 deliveries and control packets go through the connection's queue and
    // write loop: with both kinds on one topic at the rate a raw publisher sends them, they still arrive in the order
    // published (MQTT 3.1.1 §4.6, 5.0 §4.6), none missing. Every third message is QoS 1.
    [Theory]
    [InlineData(true, MqttProtocolVersion.V311)]
    [InlineData(true, MqttProtocolVersion.V500)]
    [InlineData(false, MqttProtocolVersion.V311)]
    public async Task MixedQos_PublishedAtRate_ArriveInPublishOrder(bool bareSocket, MqttProtocolVersion version)
    {
        const int Count = 6_000;
        var topic = Topic("order");
        await using var server = await StartAsync(bareSocket);
        await using var subscriber = await MqttClients.ConnectAsync(server, version);
        await subscriber.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);

        await using var publisher = await RawMqttClient.OpenAsync(server);
        await publisher.ConnectAsync(4, "order-" + Guid.NewGuid().ToString("N")[..8]);
        await publisher.SendAsync(Publishes(topic, 1, Count, n => n % 3 == 0 ? (byte)1 : (byte)0, payloadBytes: 0));

        var numbers = new List<int>();
        var wrongQos = new List<string>();
        while (numbers.Count < Count)
        {
            var message = await subscriber.NextAsync(TimeSpan.FromSeconds(30));
            var number = int.Parse(Encoding.ASCII.GetString(message.Payload), System.Globalization.CultureInfo.InvariantCulture);
            numbers.Add(number);
            if (message.QualityOfServiceLevel != (number % 3 == 0 ? MqttQualityOfServiceLevel.AtLeastOnce : MqttQualityOfServiceLevel.AtMostOnce))
            {
                wrongQos.Add($"{number} at {message.QualityOfServiceLevel}");
            }
        }

        Assert.Equal(Enumerable.Range(1, Count), numbers);
        Assert.Empty(wrongQos);
    }

    // A subscriber that stops reading: its send buffer fills, later deliveries wait in its queue, and when it reads again
    // they come after the earlier ones, in order, none lost (the straight-to-the-socket path gives way to the queue and
    // takes over again only once nothing waits).
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task QosZero_SubscriberStopsReadingThenReads_GetsEveryMessageInOrder(bool bareSocket)
    {
        const int Count = 8_000;
        var topic = Topic("stall");
        await using var server = await StartAsync(bareSocket);
        await using var subscriber = await RawMqttClient.OpenAsync(server);
        subscriber.Stream.Socket.ReceiveBufferSize = 64 * 1024;
        await subscriber.ConnectAsync(4, "stall-" + Guid.NewGuid().ToString("N")[..8]);
        await subscriber.SendAsync(RawMqttClient.Subscribe(topic, qos: 0));
        Assert.Equal((byte)0x90, (await subscriber.ReadPacketAsync())?.First);

        await using var publisher = await RawMqttClient.OpenAsync(server);
        await publisher.ConnectAsync(4, "stall-pub-" + Guid.NewGuid().ToString("N")[..8]);

        // 4,000 messages of 2 KB (8 MB) while the subscriber reads nothing: more than the socket buffers and the send
        // buffer hold, less than the send budget (16 MiB). Then 4,000 more in small bursts while it reads, so its send
        // buffer fills and drains while deliveries keep coming.
        await publisher.SendAsync(Publishes(topic, 1, Count / 2, _ => 0, payloadBytes: 2_000));
        await Task.Delay(1_000);
        var second = Task.Run(async () =>
        {
            for (var from = Count / 2 + 1; from <= Count; from += 50)
            {
                await publisher.SendAsync(Publishes(topic, from, 50, _ => 0, payloadBytes: 2_000));
                await Task.Delay(5);
            }
        });

        var numbers = new List<int>();
        while (numbers.Count < Count)
        {
            var (first, body) = await subscriber.ReadPacketAsync(TimeSpan.FromSeconds(30)) ?? throw new InvalidOperationException($"closed after {numbers.Count} messages");
            Assert.Equal((byte)0x30, first);
            numbers.Add(NumberOf(body));
        }

        await second;
        Assert.Equal(Enumerable.Range(1, Count), numbers);
    }

    // A window of one delivery in flight (Relay:Mqtt:MaxInflight=1) holds the write loop back after every QoS 1 or 2
    // delivery until the client acknowledges it: the loop suspends (its frame ends) and the acknowledgement, or anything
    // queued meanwhile, starts it again. At the rate a raw publisher sends, with QoS 0 messages between the others, every
    // message arrives once, in order and at its QoS, and none is left waiting for a wake-up that never comes.
    [Theory]
    [InlineData(true, 1)]
    [InlineData(true, 2)]
    [InlineData(false, 1)]
    [InlineData(false, 2)]
    public async Task WindowOfOne_QosOneOrTwoAtRate_EveryMessageInOrder(bool bareSocket, byte qos)
    {
        const int Count = 3_000;
        const int Chunk = 50;
        var topic = Topic("window");
        var settings = ServerFixture.Settings();
        settings["Relay:Mqtt:MaxInflight"] = "1";
        await using var server = await StartAsync(bareSocket, settings);
        await using var subscriber = await RawMqttClient.OpenAsync(server);
        await subscriber.ConnectAsync(4, "window-" + Guid.NewGuid().ToString("N")[..8]);
        await subscriber.SendAsync(RawMqttClient.Subscribe(topic, qos));
        Assert.Equal((byte)0x90, (await subscriber.ReadPacketAsync())?.First);

        await using var publisher = await RawMqttClient.OpenAsync(server);
        await publisher.ConnectAsync(4, "window-pub-" + Guid.NewGuid().ToString("N")[..8]);
        byte QosOf(int n) => n % 3 == 0 ? (byte)0 : qos;
        var publishing = Task.Run(async () =>
        {
            for (var from = 1; from <= Count; from += Chunk)
            {
                await publisher.SendAsync(Publishes(topic, from, Chunk, QosOf, payloadBytes: 0));
                if (qos == 2)
                {
                    // Each QoS 2 publish is released once its PUBREC is in (PUBCOMPs of earlier chunks are read past).
                    var recs = Enumerable.Range(from, Chunk).Count(n => QosOf(n) == 2);
                    var releases = new List<byte>();
                    while (recs > 0)
                    {
                        var (first, body) = await publisher.ReadPacketAsync(Timeout) ?? throw new InvalidOperationException("the publisher's connection closed");
                        if (first == 0x50)
                        {
                            recs--;
                            releases.AddRange([0x62, 2, body[0], body[1]]);
                        }
                    }

                    await publisher.SendAsync([.. releases]);
                }
            }
        });

        var numbers = new List<int>();
        var wrongQos = new List<string>();
        while (numbers.Count < Count)
        {
            var (first, body) = await subscriber.ReadPacketAsync(TimeSpan.FromSeconds(30)) ?? throw new InvalidOperationException($"closed after {numbers.Count} messages");
            if (first == 0x62)
            {
                await subscriber.SendAsync([0x70, 2, body[0], body[1]]);
                continue;
            }

            Assert.Equal(0x30, first & 0xF0);
            var delivered = (byte)((first >> 1) & 3);
            var at = 2 + ((body[0] << 8) | body[1]);
            if (delivered > 0)
            {
                await subscriber.SendAsync([delivered == 1 ? (byte)0x40 : (byte)0x50, 2, body[at], body[at + 1]]);
                at += 2;
            }

            var number = int.Parse(Encoding.ASCII.GetString(body, at, body.Length - at), System.Globalization.CultureInfo.InvariantCulture);
            numbers.Add(number);
            if (delivered != QosOf(number))
            {
                wrongQos.Add($"{number} at QoS {delivered}");
            }
        }

        await publishing.WaitAsync(Timeout);
        Assert.Equal(Enumerable.Range(1, Count), numbers);
        Assert.Empty(wrongQos);
    }

    // MQTT 5 §4.3.3, §4.13: a subscriber's PUBREC with a failure reason (0x80 and up) ends the QoS 2 delivery there (no
    // PUBREL, its in-flight slot freed, so the next delivery goes at once with a window of one); a PUBREC for a packet id
    // not in flight is answered PUBREL 0x92 (Packet Identifier not found) and changes nothing; a plain PUBREC is
    // answered PUBREL 0. Acknowledgements are read without a packet object (MqttDecoder.TryReadAck), with reason codes.
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task QosTwoDelivery_PubRecWithAFailureReason_EndsTheExchange_UnknownIdGetsPubRel0x92(bool bareSocket)
    {
        var topic = Topic("pubrec");
        var settings = ServerFixture.Settings();
        settings["Relay:Mqtt:MaxInflight"] = "1";
        await using var server = await StartAsync(bareSocket, settings);
        await using var subscriber = await RawMqttClient.OpenAsync(server);
        await subscriber.ConnectAsync(5, "pubrec-" + Guid.NewGuid().ToString("N")[..8]);
        await subscriber.SendAsync(RawMqttClient.Subscribe(topic, 2, level: 5));
        Assert.Equal((byte)0x90, (await subscriber.ReadPacketAsync())?.First);

        await using var publisher = await RawMqttClient.OpenAsync(server);
        await publisher.ConnectAsync(5, "pubrec-pub-" + Guid.NewGuid().ToString("N")[..8]);
        for (ushort id = 1; id <= 2; id++)
        {
            await publisher.SendAsync(RawMqttClient.QosTwoPublish(topic, id, payload: $"m{id}"));
            Assert.Equal(0, await publisher.ExpectAckAsync(0x50, id, Timeout));
            await publisher.SendAsync([0x62, 2, 0, (byte)id]);
            Assert.Equal(0, await publisher.ExpectAckAsync(0x70, id, Timeout));
        }

        // The first delivery refused with PUBREC 0x80: no PUBREL for it, and the second comes though the window is one.
        var (first, firstId) = await NextQosTwoAsync(subscriber);
        Assert.Equal("m1", first);
        await subscriber.SendAsync([0x50, 3, (byte)(firstId >> 8), (byte)firstId, 0x80]);
        var (second, secondId) = await NextQosTwoAsync(subscriber);
        Assert.Equal("m2", second);

        // An id not in flight: PUBREL 0x92. Then the second's own PUBREC (reason code and empty properties): PUBREL 0.
        var unknown = (ushort)(secondId + 100);
        await subscriber.SendAsync([0x50, 2, (byte)(unknown >> 8), (byte)unknown]);
        Assert.Equal(0x92, await subscriber.ExpectAckAsync(0x62, unknown, Timeout));
        await subscriber.SendAsync([0x50, 4, (byte)(secondId >> 8), (byte)secondId, 0, 0]);
        Assert.Equal(0, await subscriber.ExpectAckAsync(0x62, secondId, Timeout));
        await subscriber.SendAsync([0x70, 2, (byte)(secondId >> 8), (byte)secondId]);
        Assert.True(await subscriber.NothingWithinAsync(TimeSpan.FromMilliseconds(300)), "something more was sent");
    }

    // The next packet, which must be an MQTT 5 QoS 2 PUBLISH: its payload as text and its packet id.
    private static async Task<(string Payload, ushort Id)> NextQosTwoAsync(RawMqttClient client)
    {
        var (first, body) = await client.ReadPacketAsync(Timeout) ?? throw new InvalidOperationException("closed");
        Assert.Equal(0x34, first & 0xF6);
        var at = 2 + ((body[0] << 8) | body[1]);
        var id = (ushort)((body[at] << 8) | body[at + 1]);
        at += 2;
        var properties = body[at];
        at += 1 + properties;
        return (Encoding.ASCII.GetString(body, at, body.Length - at), id);
    }

    // The number a QoS 0 PUBLISH body of Publishes carries (after the topic, up to the padding).
    internal static int NumberOf(byte[] body)
    {
        var at = 2 + ((body[0] << 8) | body[1]);
        var digits = Encoding.ASCII.GetString(body, at, Array.IndexOf(body, (byte)' ', at) - at);
        return int.Parse(digits, System.Globalization.CultureInfo.InvariantCulture);
    }

    // MQTT 3.1.1 PUBLISH packets numbered from `from`, `count` of them, at the QoS `qos` gives each (QoS 1: packet id =
    // its number), the payload the number, then spaces up to `payloadBytes`.
    internal static byte[] Publishes(string topic, int from, int count, Func<int, byte> qos, int payloadBytes)
    {
        var bytes = new List<byte>();
        for (var n = from; n < from + count; n++)
        {
            var text = n.ToString(System.Globalization.CultureInfo.InvariantCulture);
            var payload = Encoding.ASCII.GetBytes(payloadBytes > text.Length ? text.PadRight(payloadBytes) : text);
            var publish = new Relay.Ingress.Mqtt.Codec.MqttPublish { Topic = topic, Qos = qos(n), PacketId = qos(n) > 0 ? (ushort)(n % 65_535 + 1) : (ushort)0, Payload = new ReadOnlySequence<byte>(payload) };
            bytes.AddRange(Relay.Ingress.Mqtt.Codec.MqttEncoder.Encode(publish, 4));
        }

        return [.. bytes];
    }
}

using System.Globalization;
using System.Net.Sockets;
using System.Text;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// A persistent QoS 1 subscriber whose connection is cut with a reset (no DISCONNECT, no FIN) again and again while
/// a publisher sends ~2,000 QoS 1 messages a second: each cut comes right after a PUBLISH was read and before it was
/// acknowledged, and the client connects again at once (so the new CONNECT often reaches the server before it has seen
/// the reset, and takes the session over). Every message the publisher got a PUBACK for reaches the subscriber; the first
/// copy of each comes in publish order; a copy sent again carries DUP, and what a cut left unacknowledged is sent again.
/// At QoS 2, cut before a PUBREC or before a PUBCOMP: every message is delivered exactly once, in order.
/// </summary>
public sealed class MqttSessionResetTests
{
    private const int Count = 6000;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Theory(Timeout = 180_000)]
    [InlineData(5)]
    [InlineData(4)]
    public async Task PersistentQosOneSubscriber_ResetMidStreamAgainAndAgain_GetsEveryAcknowledgedMessageInOrder(byte level)
    {
        var settings = ServerFixture.Settings();
        settings["Relay:Ingress:PublishRatePerSecond"] = "100000";
        settings["Relay:Ingress:PublishBurst"] = "100000";
        await using var server = await RelayServer.StartAsync(settings);
        var clientId = $"reset-{level}-{Guid.NewGuid():N}"[..20];
        var topic = $"resets/{clientId}";

        var subscriber = await ConnectAsync(server, level, clientId, expectSession: false);
        await subscriber.SendAsync(RawMqttClient.Subscribe(topic, qos: 1, level));
        Assert.Equal((byte)0x90, (await subscriber.ReadPacketAsync(Timeout))?.First);

        await using var publisher = await MqttClients.ConnectAsync(server, MqttProtocolVersion.V500);
        var publishing = PublishAsync(publisher, topic);

        var seen = new HashSet<int>();
        var firsts = new List<int>();
        var repeats = 0;
        var resets = 0;
        var unacknowledged = new HashSet<int>();
        var random = new Random(level);
        var nextReset = random.Next(200, 900);
        try
        {
            while (seen.Count < Count)
            {
                var packet = await subscriber.ReadPacketAsync(Timeout)
                    ?? throw new InvalidOperationException($"the server closed the connection after {seen.Count} of {Count} messages ({resets} resets)");
                if ((packet.First & 0xF0) != 0x30)
                {
                    continue;
                }

                Assert.Equal(1, (packet.First >> 1) & 3);
                var (id, value) = Parse(packet.First, packet.Body, level);
                if (seen.Add(value))
                {
                    firsts.Add(value);
                }
                else
                {
                    // Sent again: one the cut left unacknowledged, or one whose PUBACK the reset overtook; with DUP set.
                    Assert.True((packet.First & 0x08) != 0, $"message {value} came again without DUP (after {resets} resets)");
                    repeats += unacknowledged.Contains(value) ? 1 : 0;
                }

                if (seen.Count >= nextReset && resets < 8)
                {
                    // Cut before acknowledging it: the session owes it again.
                    unacknowledged.Add(value);
                    subscriber.Stream.Socket.LingerState = new LingerOption(true, 0);
                    await subscriber.DisposeAsync();
                    resets++;
                    nextReset = seen.Count + random.Next(200, 900);
                    subscriber = await ConnectAsync(server, level, clientId, expectSession: true);
                    continue;
                }

                unacknowledged.Remove(value);
                await subscriber.SendAsync([0x40, 0x02, (byte)(id >> 8), (byte)id]);
            }
        }
        finally
        {
            await subscriber.DisposeAsync();
        }

        await publishing.WaitAsync(Timeout);
        Assert.True(resets >= 5, $"only {resets} resets happened");
        Assert.Equal(Enumerable.Range(0, Count), firsts);
        Assert.True(repeats >= resets, $"{repeats} of the {resets} messages left unacknowledged were sent again");
    }

    [Theory(Timeout = 180_000)]
    [InlineData(5)]
    [InlineData(4)]
    public async Task PersistentQosTwoSubscriber_ResetMidExchangeAgainAndAgain_GetsEveryMessageExactlyOnceInOrder(byte level)
    {
        var settings = ServerFixture.Settings();
        settings["Relay:Ingress:PublishRatePerSecond"] = "100000";
        settings["Relay:Ingress:PublishBurst"] = "100000";
        await using var server = await RelayServer.StartAsync(settings);
        var clientId = $"reset2-{level}-{Guid.NewGuid():N}"[..20];
        var topic = $"resets/{clientId}";

        var subscriber = await ConnectAsync(server, level, clientId, expectSession: false);
        await subscriber.SendAsync(RawMqttClient.Subscribe(topic, qos: 2, level));
        Assert.Equal((byte)0x90, (await subscriber.ReadPacketAsync(Timeout))?.First);

        await using var publisher = await MqttClients.ConnectAsync(server, MqttProtocolVersion.V500);
        var publishing = PublishAsync(publisher, topic, MqttQualityOfServiceLevel.ExactlyOnce);

        // The client's side of the exchange, kept across connections as a persistent session's client keeps it: the
        // packet ids it answered with PUBREC and not yet released (a PUBLISH with one of them is not delivered again).
        var received = new HashSet<ushort>();
        var delivered = new List<int>();
        var resets = 0;
        var cutAfterPubRec = 0;
        var random = new Random(level);
        var nextReset = random.Next(200, 900);
        try
        {
            while (delivered.Count < Count)
            {
                var packet = await subscriber.ReadPacketAsync(Timeout)
                    ?? throw new InvalidOperationException($"the server closed the connection after {delivered.Count} of {Count} messages ({resets} resets)");
                var publish = (packet.First & 0xF0) == 0x30;
                var release = packet.First == 0x62;
                if (!publish && !release)
                {
                    continue;
                }

                ushort id;
                if (publish)
                {
                    Assert.Equal(2, (packet.First >> 1) & 3);
                    (id, var value) = Parse(packet.First, packet.Body, level);
                    if (received.Add(id))
                    {
                        delivered.Add(value);
                    }
                }
                else
                {
                    id = (ushort)((packet.Body[0] << 8) | packet.Body[1]);
                }

                if (delivered.Count >= nextReset && resets < 8 && release == (resets % 2 == 1))
                {
                    // Cut before answering, on a PUBLISH and on a PUBREL by turns: a PUBLISH not yet PUBREC'd comes again
                    // (the client has not seen it before), a PUBREL not yet PUBCOMP'd comes again (and no PUBLISH of it).
                    cutAfterPubRec += release ? 1 : 0;
                    subscriber.Stream.Socket.LingerState = new LingerOption(true, 0);
                    await subscriber.DisposeAsync();
                    resets++;
                    nextReset = delivered.Count + random.Next(200, 900);
                    subscriber = await ConnectAsync(server, level, clientId, expectSession: true);
                    continue;
                }

                if (publish)
                {
                    await subscriber.SendAsync([0x50, 0x02, (byte)(id >> 8), (byte)id]);
                }
                else
                {
                    received.Remove(id);
                    await subscriber.SendAsync([0x70, 0x02, (byte)(id >> 8), (byte)id]);
                }
            }
        }
        finally
        {
            await subscriber.DisposeAsync();
        }

        await publishing.WaitAsync(Timeout);
        Assert.True(resets >= 5 && cutAfterPubRec >= 2, $"only {resets} resets happened, {cutAfterPubRec} of them after a PUBREC");
        Assert.Equal(Enumerable.Range(0, Count), delivered);
    }

    private static async Task<RawMqttClient> ConnectAsync(RelayServer server, byte level, string clientId, bool expectSession)
    {
        var client = await RawMqttClient.OpenAsync(server);
        client.Stream.Socket.NoDelay = true;
        var present = await client.ConnectAsync(level, clientId, sessionExpiry: 600, timeout: Timeout);
        Assert.Equal(expectSession, present);
        return client;
    }

    // ~2,000 publishes a second at QoS 1 or 2, each acknowledged by the server.
    private static async Task PublishAsync(MqttClients.Connected publisher, string topic, MqttQualityOfServiceLevel qos = MqttQualityOfServiceLevel.AtLeastOnce)
    {
        var pending = new List<Task<MqttClientPublishResult>>(Count);
        for (var i = 0; i < Count; i++)
        {
            pending.Add(publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic)
                .WithPayload(i.ToString(CultureInfo.InvariantCulture)).WithQualityOfServiceLevel(qos).Build()));
            if (i % 20 == 19)
            {
                await Task.Delay(10);
            }
        }

        Assert.All(await Task.WhenAll(pending).WaitAsync(Timeout), static r => Assert.True(r.IsSuccess, r.ReasonCode.ToString()));
    }

    // A PUBLISH's packet id and payload (a number): topic, packet id, MQTT 5 properties, payload.
    private static (ushort Id, int Value) Parse(byte first, byte[] body, byte level)
    {
        Assert.NotEqual(0, (first >> 1) & 3);
        var offset = 2 + ((body[0] << 8) | body[1]);
        var id = (ushort)((body[offset] << 8) | body[offset + 1]);
        offset += 2;
        if (level == 5)
        {
            var length = 0;
            for (var shift = 0; ; shift += 7)
            {
                var b = body[offset++];
                length |= (b & 0x7F) << shift;
                if ((b & 0x80) == 0)
                {
                    break;
                }
            }

            offset += length;
        }

        return (id, int.Parse(Encoding.ASCII.GetString(body, offset, body.Length - offset), CultureInfo.InvariantCulture));
    }
}

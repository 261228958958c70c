using System.Text;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// An MQTT publisher's burst is one delivery batch while its input is already there (each subscriber gets the burst in
/// a few sends), but its stall never holds what it delivered: a publisher that stops in the middle of a packet, or
/// trickles one in, leaves every subscriber with what its complete packets published.
/// </summary>
public sealed class MqttPublisherStallTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task PublisherStallingMidPacket_AfterABurst_SubscriberGetsTheWholeBurstMeanwhile(bool ownTransport)
    {
        const int Burst = 50;
        var settings = ServerFixture.Settings();
        settings["Relay:Mqtt:OwnTransport"] = ownTransport ? "true" : "false";
        settings["Relay:Ingress:PublishRatePerSecond"] = "100000";
        await using var server = await RelayServer.StartAsync(settings);
        var topic = $"stall/{Guid.NewGuid():N}";

        await using var subscriber = await RawMqttClient.OpenAsync(server);
        await subscriber.ConnectAsync(4, "stall-sub-" + Guid.NewGuid().ToString("N")[..8]);
        await subscriber.SendAsync(RawMqttClient.Subscribe(topic, qos: 0));
        Assert.Equal((byte)0x90, (await subscriber.ReadPacketAsync())?.First);

        await using var publisher = await RawMqttClient.OpenAsync(server);
        await publisher.ConnectAsync(4, "stall-pub-" + Guid.NewGuid().ToString("N")[..8]);

        // A burst of complete publishes and the first bytes of one more, in one write; then the publisher stalls.
        var next = MqttDeliveryOrderTests.Publishes(topic, Burst + 1, 1, _ => 0, payloadBytes: 100);
        await publisher.SendAsync([.. MqttDeliveryOrderTests.Publishes(topic, 1, Burst, _ => 0, payloadBytes: 100), .. next.AsSpan(0, 5)]);
        for (var n = 1; n <= Burst; n++)
        {
            Assert.Equal(n, await NextNumberAsync(subscriber));
        }

        // The rest of the packet, a byte at a time: each wait for the next byte ends the batch, nothing is held.
        foreach (var b in next.AsSpan(5).ToArray())
        {
            await publisher.SendAsync([b]);
            await Task.Delay(2);
        }

        Assert.Equal(Burst + 1, await NextNumberAsync(subscriber));
    }

    // The number a QoS 0 MQTT 3.1.1 PUBLISH of MqttDeliveryOrderTests.Publishes carries (its payload, padded with spaces).
    private static async Task<int> NextNumberAsync(RawMqttClient subscriber)
    {
        var (first, body) = await subscriber.ReadPacketAsync(Timeout) ?? throw new InvalidOperationException("the server closed the subscriber");
        Assert.Equal(0x30, first & 0xF0);
        var topicLength = (body[0] << 8) | body[1];
        return int.Parse(Encoding.ASCII.GetString(body, 2 + topicLength, body.Length - 2 - topicLength).TrimEnd(), System.Globalization.CultureInfo.InvariantCulture);
    }
}

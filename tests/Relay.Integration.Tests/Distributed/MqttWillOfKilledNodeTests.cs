using System.Diagnostics;
using System.Text;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Distributed;

/// <summary>
/// The last wills of a node that dies (SIGKILL): another node publishes them once the dead node's beat is older than
/// Relay:Redis:NodeTtl (2 s here), unless the client connected again elsewhere first or ended with a normal DISCONNECT;
/// an MQTT 5 delayed will once its delay has passed since the death, unless the client came back within it (docs/mqtt.md,
/// "Guarantees under failure"). A subscriber on B watches the devices' status topic.
/// </summary>
public sealed class MqttWillOfKilledNodeTests(ITestOutputHelper output)
{
    // The dead node's beat lapses after NodeTtl (2 s) and the next sweep runs within a third of it: generous on a busy machine.
    private static readonly TimeSpan WillWithin = TimeSpan.FromSeconds(30);

    // Long enough for B's sweeps to have taken and published A's wills, had there been any to publish.
    private static readonly TimeSpan SweepsDone = TimeSpan.FromSeconds(8);

    [Fact]
    public async Task NodeKilled_DeviceWithWill_WillPublishedByOtherNodeAndRetained()
    {
        await using var scene = await Scene.StartAsync(output);
        var (cluster, portA, portB, topic, subscriber) = scene;
        await using var device = await RawMqttClient.OpenAsync(portA);
        await device.ConnectAsync(4, "device-1", will: new RawMqttWill(topic, "offline", Qos: 1, Retain: true));

        cluster.IngressA.Kill();

        var (payload, _) = await NextPublishAsync(subscriber, WillWithin);
        Assert.Equal("offline", payload);

        // Kept as the topic's retained message: a subscriber that comes afterwards gets it, with RETAIN.
        await using var late = await SubscribeAsync(portB, topic);
        var (retained, retain) = await NextPublishAsync(late, WillWithin);
        Assert.Equal(("offline", true), (retained, retain));
    }

    [Fact]
    public async Task NodeKilled_DeviceBackOnOtherNodeBeforeSweep_DeadNodesWillNotPublished()
    {
        await using var scene = await Scene.StartAsync(output);
        var (cluster, portA, portB, topic, subscriber) = scene;
        await using (var device = await RawMqttClient.OpenAsync(portA))
        {
            await device.ConnectAsync(4, "device-2", will: new RawMqttWill(topic, "offline", Qos: 1, Retain: true));
            cluster.IngressA.Kill();
        }

        // Back at once on B (A's beat has not lapsed yet), with its own will: A's is replaced, never published.
        await using var again = await RawMqttClient.OpenAsync(portB);
        await again.ConnectAsync(4, "device-2", will: new RawMqttWill(topic, "offline again", Qos: 1, Retain: true));
        await Task.Delay(SweepsDone);
        await ExpectMarkerFirstAsync(portB, topic, subscriber);
    }

    [Fact]
    public async Task NodeKilled_AfterNormalDisconnect_NoWill()
    {
        await using var scene = await Scene.StartAsync(output);
        var (cluster, portA, portB, topic, subscriber) = scene;
        await using (var device = await RawMqttClient.OpenAsync(portA))
        {
            await device.ConnectAsync(4, "device-4", will: new RawMqttWill(topic, "offline", Qos: 1, Retain: true));
            await device.SendAsync([0xE0, 0]);
            Assert.Empty(await device.ReadUntilClosedAsync(TimeSpan.FromSeconds(30)));
        }

        // A has removed the entry as the connection ended; then it dies.
        await Task.Delay(TimeSpan.FromSeconds(1));
        cluster.IngressA.Kill();
        await Task.Delay(SweepsDone);
        await ExpectMarkerFirstAsync(portB, topic, subscriber);
    }

    [Fact]
    public async Task NodeKilled_DelayedWill_PublishedAfterItsDelayNotBefore()
    {
        await using var scene = await Scene.StartAsync(output);
        var (cluster, portA, _, topic, subscriber) = scene;
        await using var device = await RawMqttClient.OpenAsync(portA);
        await device.ConnectAsync(5, "device-3", sessionExpiry: 300, will: new RawMqttWill(topic, "gone", Qos: 1, DelaySeconds: 5));

        cluster.IngressA.Kill();
        var killed = Stopwatch.StartNew();

        // Due 5 s after A's last beat (at most a third of NodeTtl before the kill): nothing for the first 3 s.
        Assert.True(await subscriber.NothingWithinAsync(TimeSpan.FromSeconds(3)));
        var (payload, _) = await NextPublishAsync(subscriber, WillWithin);
        output.WriteLine($"delayed will on B {killed.Elapsed.TotalSeconds:F1} s after the kill");
        Assert.Equal("gone", payload);
    }

    [Fact]
    public async Task NodeKilled_DelayedWill_ClientBackWithinDelay_Cancelled()
    {
        await using var scene = await Scene.StartAsync(output);
        var (cluster, portA, portB, topic, subscriber) = scene;
        await using (var device = await RawMqttClient.OpenAsync(portA))
        {
            await device.ConnectAsync(5, "device-5", sessionExpiry: 300, will: new RawMqttWill(topic, "gone", Qos: 1, DelaySeconds: 10));
            cluster.IngressA.Kill();
        }

        // Back on B after B's sweep has (most likely) taken A's will, well within its delay: the will is cancelled.
        var killed = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(4));
        await using var again = await RawMqttClient.OpenAsync(portB);
        await again.ConnectAsync(5, "device-5", sessionExpiry: 300, timeout: TimeSpan.FromSeconds(60), will: new RawMqttWill(topic, "gone again", Qos: 1, DelaySeconds: 10));
        await Task.Delay(TimeSpan.FromSeconds(Math.Max(0, 16 - killed.Elapsed.TotalSeconds)));
        await ExpectMarkerFirstAsync(portB, topic, subscriber);
    }

    // Two ingress processes, a device status topic, and a subscriber of it on B.
    private sealed class Scene(RelayCluster cluster, int portA, int portB, string topic, RawMqttClient subscriber) : IAsyncDisposable
    {
        public RelayCluster Cluster => cluster;

        public int PortA => portA;

        public int PortB => portB;

        public string Topic => topic;

        public RawMqttClient Subscriber => subscriber;

        public void Deconstruct(out RelayCluster cluster, out int portA, out int portB, out string topic, out RawMqttClient subscriber) =>
            (cluster, portA, portB, topic, subscriber) = (Cluster, PortA, PortB, Topic, Subscriber);

        public static async Task<Scene> StartAsync(ITestOutputHelper output)
        {
            var cluster = await RelayCluster.StartAsync();
            try
            {
                cluster.Output = output.WriteLine;
                var (portA, portB) = (await cluster.IngressA.MqttPortAsync(), await cluster.IngressB.MqttPortAsync());
                var topic = $"devices/{Guid.NewGuid():N}/status";
                return new Scene(cluster, portA, portB, topic, await SubscribeAsync(portB, topic));
            }
            catch
            {
                await cluster.DisposeAsync();
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            await subscriber.DisposeAsync();
            await cluster.DisposeAsync();
        }
    }

    // An MQTT 3.1.1 subscriber of one topic at QoS 1, once its SUBACK came.
    private static async Task<RawMqttClient> SubscribeAsync(int port, string topic)
    {
        var client = await RawMqttClient.OpenAsync(port);
        await client.ConnectAsync(4, $"watch-{Guid.NewGuid():N}");
        await client.SendAsync(RawMqttClient.Subscribe(topic, qos: 1));
        await client.ExpectAckAsync(0x90, 1);
        return client;
    }

    // A QoS 1 publish of "marker" from a client of its own, once acknowledged: the subscriber's next message, no will before it.
    private static async Task ExpectMarkerFirstAsync(int port, string topic, RawMqttClient subscriber)
    {
        await PublishMarkerAsync(port, topic);
        var (first, _) = await NextPublishAsync(subscriber, WillWithin);
        Assert.Equal("marker", first);
    }

    private static async Task PublishMarkerAsync(int port, string topic)
    {
        await using var publisher = await RawMqttClient.OpenAsync(port);
        await publisher.ConnectAsync(4, $"marker-{Guid.NewGuid():N}");
        var name = Encoding.UTF8.GetBytes(topic);
        byte[] body = [(byte)(name.Length >> 8), (byte)name.Length, .. name, 0, 1, .. "marker"u8];
        await publisher.SendAsync([0x32, (byte)body.Length, .. body]);
        await publisher.ExpectAckAsync(0x40, 1);
    }

    // The next PUBLISH (MQTT 3.1.1) on the subscriber: its payload and RETAIN flag; QoS 1 ones are acknowledged.
    private static async Task<(string Payload, bool Retain)> NextPublishAsync(RawMqttClient client, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (DateTime.UtcNow < deadline)
        {
            (byte First, byte[] Body)? packet;
            try
            {
                packet = await client.ReadPacketAsync(deadline - DateTime.UtcNow);
            }
            catch (OperationCanceledException)
            {
                break;
            }

            var (first, body) = packet ?? throw new InvalidOperationException("the subscriber's connection closed");
            if ((first & 0xF0) != 0x30)
            {
                continue;
            }

            var qos = (first >> 1) & 3;
            var at = 2 + ((body[0] << 8) | body[1]);
            if (qos > 0)
            {
                await client.SendAsync([0x40, 2, body[at], body[at + 1]]);
                at += 2;
            }

            return (Encoding.UTF8.GetString(body, at, body.Length - at), (first & 1) == 1);
        }

        throw new TimeoutException($"no PUBLISH within {within.TotalSeconds} s");
    }
}

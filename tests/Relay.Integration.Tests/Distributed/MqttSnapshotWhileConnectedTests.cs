using System.Text;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Distributed;

/// <summary>
/// A persistent session is written to the store while its connection holds it (a SUBSCRIBE, the periodic refresh); if its
/// node then dies, the node the client connects to next starts from what was written. What the client had been sent but
/// had not acknowledged must count as not delivered there: written as delivered, a SIGKILL right after the write loses it
/// for that subscriber although its publisher was acknowledged (docs/mqtt.md, "Guarantees under failure").
/// </summary>
public sealed class MqttSnapshotWhileConnectedTests(ITestOutputHelper output)
{
    private const int Messages = 5;

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task SessionWrittenWhileConnected_NodeKilled_UnacknowledgedDeliveriesAreSentAgain(byte qos)
    {
        await using var cluster = await RelayCluster.StartAsync();
        cluster.Output = output.WriteLine;
        var portA = await cluster.IngressA.MqttPortAsync();
        var portB = await cluster.IngressB.MqttPortAsync();
        var run = Guid.NewGuid().ToString("N")[..8];
        var topic = $"snap/{run}";
        var clientId = $"sub-{run}";

        // The subscriber on A, persistent, at the QoS under test; it reads what it is sent and acknowledges nothing.
        await using var subscriber = await RawMqttClient.OpenAsync(portA);
        Assert.False(await subscriber.ConnectAsync(5, clientId, sessionExpiry: 300));
        await subscriber.SendAsync(Subscribe(topic, qos, packetId: 1));
        await ExpectAsync(subscriber, 0x90);

        // Five QoS 2 publishes through B, each acknowledged to the publisher.
        await using (var publisher = await RawMqttClient.OpenAsync(portB))
        {
            await publisher.ConnectAsync(5, $"pub-{run}");
            for (ushort id = 1; id <= Messages; id++)
            {
                await publisher.SendAsync(RawMqttClient.QosTwoPublish(topic, id, payload: $"m{id}"));
                await publisher.ExpectAckAsync(0x50, id);
                await publisher.SendAsync([0x62, 2, (byte)(id >> 8), (byte)id]);
                await publisher.ExpectAckAsync(0x70, id);
            }
        }

        var first = new List<string>();
        while (first.Count < Messages)
        {
            var (type, body) = await subscriber.ReadPacketAsync(TimeSpan.FromSeconds(30)) ?? throw new InvalidOperationException("A closed the subscriber");
            Assert.Equal(0x30 | (qos << 1), type & 0xF6);
            first.Add(Payload(body));
        }

        // A second SUBSCRIBE writes the session while its connection holds it; then A dies before anything is acknowledged.
        await subscriber.SendAsync(Subscribe($"{topic}/other", qos, packetId: 2));
        await ExpectAsync(subscriber, 0x90);
        await Task.Delay(TimeSpan.FromSeconds(2));
        cluster.IngressA.Kill();

        // On B, once B may take the dead node's session (its claim lapses): the five again.
        await using var again = await ConnectWhenTakenAsync(portB, clientId);
        var second = new List<string>();
        while (second.Count < Messages && await again.ReadPacketAsync(TimeSpan.FromSeconds(20)) is { } packet)
        {
            if ((packet.First & 0xF0) == 0x30)
            {
                second.Add(Payload(packet.Body));
            }
        }

        output.WriteLine($"first connection got [{string.Join(", ", first)}]; on B after the kill [{string.Join(", ", second)}]");
        Assert.Equal(first, second);
    }

    // The session is held by A's claim until A's lease lapses: B answers "session present" once it has taken it.
    private static async Task<RawMqttClient> ConnectWhenTakenAsync(int port, string clientId)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            var client = await RawMqttClient.OpenAsync(port);
            try
            {
                if (await client.ConnectAsync(5, clientId, sessionExpiry: 300, timeout: TimeSpan.FromSeconds(30)))
                {
                    return client;
                }
            }
            catch (InvalidOperationException) when (DateTime.UtcNow < deadline)
            {
            }

            await client.DisposeAsync();
            if (DateTime.UtcNow >= deadline)
            {
                throw new TimeoutException($"B never resumed the session of {clientId} (session present 0)");
            }

            await Task.Delay(500);
        }
    }

    private static async Task ExpectAsync(RawMqttClient client, byte type)
    {
        while (await client.ReadPacketAsync(TimeSpan.FromSeconds(30)) is { } packet)
        {
            if (packet.First == type)
            {
                return;
            }
        }

        throw new InvalidOperationException($"closed before packet 0x{type:X2}");
    }

    // MQTT 5 SUBSCRIBE of one filter (no properties).
    private static byte[] Subscribe(string filter, byte qos, ushort packetId)
    {
        var name = Encoding.UTF8.GetBytes(filter);
        byte[] body = [(byte)(packetId >> 8), (byte)packetId, 0, (byte)(name.Length >> 8), (byte)name.Length, .. name, qos];
        return [0x82, (byte)body.Length, .. body];
    }

    // A PUBLISH's payload (MQTT 5, QoS 1 or 2: topic, packet id, properties).
    private static string Payload(byte[] body)
    {
        var at = 2 + ((body[0] << 8) | body[1]) + 2;
        var properties = body[at];
        at += 1 + properties;
        return Encoding.UTF8.GetString(body, at, body.Length - at);
    }
}

using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Relay.Client;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// A persistent session's snapshot (what a node resuming it after this one died starts from) taken while its
/// connection streams QoS 1 deliveries that the client acknowledges at once: no snapshot may start a channel past a
/// delivery the client had not acknowledged yet, whichever place it was passing through then (the send queue, the
/// write loop's hands, the in-flight table). The write loop takes an item from the queue only once it is in flight,
/// and the snapshot reads the places in the order items move through them.
/// </summary>
public sealed class MqttSnapshotRaceTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task SnapshotsTakenUnderAQosOneStream_NeverStartPastAnUnacknowledgedDelivery(bool ownTransport)
    {
        const int Messages = 3_000;
        var settings = ServerFixture.Settings();
        settings["Relay:Mqtt:OwnTransport"] = ownTransport ? "true" : "false";
        settings["Relay:Ingress:PublishRatePerSecond"] = "100000";
        await using var server = await RelayServer.StartAsync(settings);
        var broker = server.Services.GetRequiredService<Relay.Ingress.Mqtt.MqttBroker>();
        var topic = $"snap/{Guid.NewGuid():N}";
        var clientId = "snap-" + Guid.NewGuid().ToString("N")[..10];

        await using var subscriber = await RawMqttClient.OpenAsync(server);
        await subscriber.ConnectAsync(5, clientId, sessionExpiry: 600);
        await subscriber.SendAsync(RawMqttClient.Subscribe(topic, qos: 1, level: 5));
        var (suback, _) = await subscriber.ReadPacketAsync() ?? throw new InvalidOperationException("closed before SUBACK");
        Assert.Equal(0x90, suback);
        var session = broker.SessionOf(RelayServer.AppId, clientId) ?? throw new InvalidOperationException("no session on the node");

        // When the client began to send the PUBACK of message k (a timestamp taken before the send: the server cannot
        // have read it earlier).
        var ackStarted = new long[Messages];
        var received = 0;
        var reading = Task.Run(async () =>
        {
            while (received < Messages)
            {
                var (first, body) = await subscriber.ReadPacketAsync(Timeout) ?? throw new InvalidOperationException($"closed after {received} messages");
                if ((first & 0xF0) != 0x30)
                {
                    continue;
                }

                var topicLength = (body[0] << 8) | body[1];
                var at = 2 + topicLength;
                var packetId = (ushort)((body[at] << 8) | body[at + 1]);
                at += 2;
                var propertiesLength = 0;
                for (var shift = 0; ; shift += 7)
                {
                    var b = body[at++];
                    propertiesLength |= (b & 0x7F) << shift;
                    if ((b & 0x80) == 0)
                    {
                        break;
                    }
                }

                at += propertiesLength;
                var k = int.Parse(Encoding.UTF8.GetString(body, at, body.Length - at), System.Globalization.CultureInfo.InvariantCulture);
                Volatile.Write(ref ackStarted[k], Stopwatch.GetTimestamp());
                await subscriber.SendAsync([0x40, 2, (byte)(packetId >> 8), (byte)packetId]);
                received++;
            }
        });

        // Snapshots in a loop on another thread for as long as the stream runs: (when it ended, where it starts the topic).
        var snapshots = new ConcurrentQueue<(long EndedAt, long Seq)>();
        using var stop = new CancellationTokenSource();
        var snapshotting = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                var (state, _) = session.Snapshot();
                var endedAt = Stopwatch.GetTimestamp();
                if (state.Positions.FirstOrDefault(p => p.Channel == topic) is { } position)
                {
                    snapshots.Enqueue((endedAt, position.Seq));
                }
            }
        });

        var seqOf = new long[Messages];
        await using (var publisher = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout))
        {
            for (var k = 0; k < Messages; k++)
            {
                seqOf[k] = (await publisher.PublishAsync(topic, k).WaitAsync(Timeout)).Seq;
            }
        }

        await reading.WaitAsync(Timeout);
        await stop.CancelAsync();
        await snapshotting.WaitAsync(Timeout);

        Assert.True(snapshots.Count > 100, $"only {snapshots.Count} snapshots named the topic");
        // Every message at or before a snapshot's position must have been acknowledged before the snapshot ended: the
        // latest acknowledgement among messages 0..k, against the snapshots that start after message k.
        var latestAck = new long[Messages];
        for (var k = 0; k < Messages; k++)
        {
            latestAck[k] = Math.Max(ackStarted[k], k == 0 ? 0 : latestAck[k - 1]);
        }

        var violations = new List<string>();
        foreach (var (endedAt, seq) in snapshots)
        {
            var covered = Array.BinarySearch(seqOf, seq);
            covered = covered >= 0 ? covered : ~covered - 1;
            if (covered >= 0 && latestAck[covered] > endedAt)
            {
                var late = Enumerable.Range(0, covered + 1).First(k => ackStarted[k] > endedAt);
                violations.Add($"a snapshot started the topic after seq {seq}, but message {late} (seq {seqOf[late]}) was acknowledged only after it");
            }
        }

        Assert.True(violations.Count == 0, $"{violations.Count} of {snapshots.Count} snapshots skipped an unacknowledged delivery; first: {violations.FirstOrDefault()}");
    }
}

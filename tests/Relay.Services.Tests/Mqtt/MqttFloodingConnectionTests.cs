using System.Text;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// One MQTT client that always has more input queued must not take the node from the others, on the bare socket where
/// reads wait in Relay's poller (a wake-up runs on the poller's thread, and <c>SocketReader.InlineReadBudget</c> hands a
/// longer burst to the pool). A raw client floods PINGREQs as fast as the socket takes them (reading its PINGRESPs, so
/// it is never cut as a slow consumer) while eight clients publish QoS 1 and wait for each PUBACK in turn; the
/// realtime case is <c>FloodingConnectionTests</c> (Integration). It checks the outcome, not the budget: it passed with
/// the budget removed too (the MQTT read loop's PINGRESPs go out through its write loop and its reads wait often), so
/// it fails only if the poller itself lets one busy socket starve the others on its thread.
/// </summary>
public sealed class MqttFloodingConnectionTests(BareSocketServerFixture fixture) : IClassFixture<BareSocketServerFixture>
{
    private const int Probes = 8;
    private static readonly TimeSpan FloodTime = TimeSpan.FromSeconds(4);

    [Fact]
    public async Task OneClientFloodingPings_LeavesEveryOtherClientServed()
    {
        var probes = new List<RawMqttClient>();
        await using var flooder = await RawMqttClient.OpenAsync(fixture.Server);
        try
        {
            for (var i = 0; i < Probes; i++)
            {
                var probe = await RawMqttClient.OpenAsync(fixture.Server);
                probes.Add(probe);
                Assert.False(await probe.ConnectAsync(4, $"flood-probe-{i}-{Guid.NewGuid():N}"));
            }

            Assert.False(await flooder.ConnectAsync(4, $"flooder-{Guid.NewGuid():N}"));
            using var stop = new CancellationTokenSource(FloodTime);
            var batch = Enumerable.Repeat<byte[]>([0xC0, 0x00], 10_000).SelectMany(static p => p).ToArray();
            long sent = 0;
            long read = 0;
            var writing = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    await flooder.Stream.WriteAsync(batch, stop.Token);
                    sent += batch.Length;
                }
            });
            var reading = Task.Run(async () =>
            {
                var buffer = new byte[64 * 1024];
                int count;
                while ((count = await flooder.Stream.ReadAsync(buffer, stop.Token)) > 0)
                {
                    read += count;
                }
            });

            var acks = await Task.WhenAll(probes.Select((probe, i) => ProbeAsync(probe, $"mqtt-flood/{i}", stop.Token)));
            await Task.WhenAll(writing, reading).ContinueWith(static _ => { }, TaskScheduler.Default);

            Assert.True(sent > 4_000_000, $"the flood was {sent:N0} bytes: too little to show anything");
            Assert.True(read > 1_000_000, $"the flooder got {read:N0} bytes of PINGRESPs: it was not served, or was cut");
            Assert.All(acks, count => Assert.True(count >= 10, $"a client got {count} PUBACKs in {FloodTime.TotalSeconds} s while another flooded (per client: {string.Join(' ', acks)})"));
        }
        finally
        {
            foreach (var probe in probes)
            {
                await probe.DisposeAsync();
            }
        }
    }

    /// <summary>Publishes QoS 1 and waits for each PUBACK until the flood stops; an answer that takes over 5 s fails the test.</summary>
    private static async Task<int> ProbeAsync(RawMqttClient probe, string topic, CancellationToken flooding)
    {
        var acks = 0;
        while (!flooding.IsCancellationRequested)
        {
            var id = (ushort)(acks + 1);
            await probe.SendAsync(QosOnePublish(topic, id));
            await probe.ExpectAckAsync(0x40, id, TimeSpan.FromSeconds(5));
            acks++;
            await Task.Delay(20, CancellationToken.None);
        }

        return acks;
    }

    /// <summary>An MQTT 3.1.1 PUBLISH at QoS 1, hand-encoded.</summary>
    private static byte[] QosOnePublish(string topic, ushort id) => RawMqttClient.Publish(topic, qos: 1, id);
}

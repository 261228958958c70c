using System.Diagnostics;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// A PUBLISH one client sends just after another client's SUBSCRIBE to the same topic reaches the new subscriber, as
/// from a broker that reads on one thread: Relay reads two connections on different threads, and the publish was often
/// read (and dispatched) first (6 of 40 rounds missed here before the SUBSCRIBE's arrival time was used). The channel is
/// one the node delivers already (the publisher subscribes to it), as in the Paho suite's No Local and request/response
/// tests; a filter with a wildcard too, and a retained publish (once: live, or as retained after the SUBACK, never
/// both); and ten subscribers joining a stream of ~5,000 messages a second, each of which gets every message from its
/// first, in order, once. And the other way round: a publish the server acknowledged before the SUBSCRIBE was sent does not reach it.
/// </summary>
public sealed class MqttSubscribeRaceTests
{
    private const int Rounds = 40;

    [Theory(Timeout = 120_000)]
    [InlineData(5, 0, false, false)]
    [InlineData(5, 100, false, false)]
    [InlineData(4, 0, false, false)]
    [InlineData(5, 0, true, false)]
    [InlineData(5, 0, false, true)]
    [InlineData(4, 0, true, true)]
    public async Task PublishSentJustAfterAnotherClientsSubscribe_ReachesIt_Once(byte level, int gapMicroseconds, bool wildcard, bool retain)
    {
        await using var server = await RelayServer.StartAsync(ServerFixture.Settings());
        var (publisher, subscriber) = await PairAsync(server, level);
        await using (publisher)
        await using (subscriber)
        {
            var missed = new List<int>();
            for (var round = 0; round < Rounds; round++)
            {
                var channel = $"race/{level}/{gapMicroseconds}/{wildcard}/{retain}/{round}";
                await publisher.SendAsync(RawMqttClient.Subscribe(channel, qos: 0, level));
                Assert.Equal((byte)0x90, (await publisher.ReadPacketAsync())?.First);

                // Back to back, no wait for the SUBACK (written straight to the sockets, Nagle off).
                subscriber.Stream.Write(RawMqttClient.Subscribe(wildcard ? $"{channel}/#" : channel, qos: 0, level));
                Spin(gapMicroseconds);
                var publish = RawMqttClient.Publish(channel, qos: 0, payload: $"round {round}", level: level);
                publish[0] |= retain ? (byte)1 : (byte)0;
                publisher.Stream.Write(publish);
                Assert.Equal((byte)0x30, (await publisher.ReadPacketAsync())?.First);

                var messages = await PublishesWithinAsync(subscriber, TimeSpan.FromSeconds(5), $"round {round}");
                Assert.True(messages <= 1, $"round {round}: the message came {messages} times");
                if (messages == 0)
                {
                    missed.Add(round);
                }
            }

            Assert.True(missed.Count == 0, $"the subscriber missed the publish in {missed.Count} of {Rounds} rounds: {string.Join(", ", missed)}");
        }
    }

    [Theory(Timeout = 120_000)]
    [InlineData(5)]
    [InlineData(4)]
    public async Task SubscribersJoiningAStreamOfThousandsAMessagesASecond_GetEveryMessageSentAfterTheirSubscribe_InOrderOnce(byte level)
    {
        const int messages = 10_000;
        const int joiners = 10;
        var settings = ServerFixture.Settings();
        settings["Relay:Ingress:PublishRatePerSecond"] = "100000";
        await using var server = await RelayServer.StartAsync(settings);
        var channel = $"stream/{level}";

        // One subscriber from the start, so the node delivers the channel when the others join.
        var (publisher, anchor) = await PairAsync(server, level);
        await using (publisher)
        await using (anchor)
        {
            await anchor.SendAsync(RawMqttClient.Subscribe(channel, qos: 0, level));
            Assert.Equal((byte)0x90, (await anchor.ReadPacketAsync())?.First);
            var clients = new List<RawMqttClient>();
            try
            {
                var readers = new List<Task<List<int>>>();
                for (var i = 0; i < joiners + 1; i++)
                {
                    var client = i == 0 ? anchor : await OpenAsync(server, level);
                    if (i > 0)
                    {
                        clients.Add(client);
                    }

                    readers.Add(ReadNumbersAsync(client, level, messages - 1));
                }

                // ~5,000 a second, QoS 0; joiner j subscribes (half of them to a wildcard filter) right before message 700 j.
                var subscribedBefore = new int[joiners];
                for (var n = 0; n < messages; n++)
                {
                    if (n % 700 == 0 && n / 700 is var j and >= 1 and <= joiners)
                    {
                        subscribedBefore[j - 1] = n;
                        clients[j - 1].Stream.Write(RawMqttClient.Subscribe(j % 2 == 0 ? $"{channel}/#" : channel, qos: 0, level));
                    }

                    publisher.Stream.Write(RawMqttClient.Publish(channel, qos: 0, payload: n.ToString(System.Globalization.CultureInfo.InvariantCulture), level: level));
                    if (n % 50 == 49)
                    {
                        await Task.Delay(10);
                    }
                }

                var received = await Task.WhenAll(readers);
                Assert.Equal(Enumerable.Range(0, messages), received[0]);
                var late = new List<string>();
                for (var j = 0; j < joiners; j++)
                {
                    var got = received[j + 1];
                    Assert.Equal(Enumerable.Range(got[0], messages - got[0]), got);
                    if (got[0] > subscribedBefore[j])
                    {
                        late.Add($"joiner {j} ({(j % 2 == 1 ? "wildcard" : "channel")}) subscribed before message {subscribedBefore[j]}, its first was {got[0]}");
                    }
                }

                Assert.True(late.Count == 0, string.Join("; ", late));
            }
            finally
            {
                foreach (var client in clients)
                {
                    await client.DisposeAsync();
                }
            }
        }
    }

    // The numbers of the PUBLISHes a client gets until the last one (SUBACKs skipped).
    private static async Task<List<int>> ReadNumbersAsync(RawMqttClient client, byte level, int last)
    {
        var numbers = new List<int>();
        while (numbers.Count == 0 || numbers[^1] != last)
        {
            var (first, body) = await client.ReadPacketAsync(TimeSpan.FromSeconds(30)) ?? throw new InvalidOperationException("the server closed the connection");
            if ((first & 0xF0) != 0x30)
            {
                continue;
            }

            // Topic, then (MQTT 5) an empty property list, then the payload.
            var payload = 2 + ((body[0] << 8) | body[1]) + (level == 5 ? 1 : 0);
            numbers.Add(int.Parse(body.AsSpan(payload), System.Globalization.CultureInfo.InvariantCulture));
        }

        return numbers;
    }

    [Theory(Timeout = 120_000)]
    [InlineData(5)]
    [InlineData(4)]
    public async Task PublishAcknowledgedBeforeTheSubscribeWasSent_DoesNotReachIt(byte level)
    {
        await using var server = await RelayServer.StartAsync(ServerFixture.Settings());
        var (publisher, subscriber) = await PairAsync(server, level);
        await using (publisher)
        await using (subscriber)
        {
            for (var round = 0; round < 20; round++)
            {
                var channel = $"before/{level}/{round}";
                await publisher.SendAsync(RawMqttClient.Subscribe(channel, qos: 0, level));
                Assert.Equal((byte)0x90, (await publisher.ReadPacketAsync())?.First);

                // QoS 1: the PUBACK (and the publisher's own copy) come before the other client subscribes.
                publisher.Stream.Write(RawMqttClient.Publish(channel, qos: 1, id: 7, payload: $"round {round}", level: level));
                var seen = new List<byte>();
                while (seen.Count < 2 && await publisher.ReadPacketAsync() is var (first, _))
                {
                    seen.Add((byte)(first & 0xF0));
                }

                Assert.Equal([(byte)0x30, (byte)0x40], seen.Order());
                subscriber.Stream.Write(RawMqttClient.Subscribe(channel, qos: 0, level));
                Assert.Equal((byte)0x90, (await subscriber.ReadPacketAsync())?.First);
                Assert.Equal(0, await PublishesWithinAsync(subscriber, TimeSpan.FromMilliseconds(200), $"round {round}"));
            }
        }
    }

    private static async Task<(RawMqttClient Publisher, RawMqttClient Subscriber)> PairAsync(RelayServer server, byte level) =>
        (await OpenAsync(server, level), await OpenAsync(server, level));

    // A connected raw client, Nagle off.
    private static async Task<RawMqttClient> OpenAsync(RelayServer server, byte level)
    {
        var client = await RawMqttClient.OpenAsync(server);
        client.Stream.Socket.NoDelay = true;
        await client.ConnectAsync(level, $"race-{Guid.NewGuid():N}"[..20]);
        return client;
    }

    // How many times the PUBLISH of the payload comes: waited for up to `wait` (a busy run can be slow, a miss is told
    // from a late message), then 100 ms more for a copy; the SUBACK, and a round before's message were it late, skipped.
    private static async Task<int> PublishesWithinAsync(RawMqttClient client, TimeSpan wait, string payload)
    {
        var count = 0;
        var expected = System.Text.Encoding.UTF8.GetBytes(payload);
        var until = Stopwatch.GetTimestamp() + (long)(wait.TotalSeconds * Stopwatch.Frequency);
        while (Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), until) > TimeSpan.Zero)
        {
            try
            {
                var packet = await client.ReadPacketAsync(Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), until));
                Assert.NotNull(packet);
                if ((packet.Value.First & 0xF0) == 0x30 && packet.Value.Body.AsSpan().EndsWith(expected) && ++count == 1)
                {
                    until = Stopwatch.GetTimestamp() + (Stopwatch.Frequency / 10);
                }
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        return count;
    }

    private static void Spin(int microseconds)
    {
        var until = Stopwatch.GetTimestamp() + (Stopwatch.Frequency * microseconds / 1_000_000);
        while (Stopwatch.GetTimestamp() < until)
        {
            Thread.SpinWait(10);
        }
    }
}

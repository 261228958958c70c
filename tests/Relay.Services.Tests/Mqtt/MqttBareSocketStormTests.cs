using System.Collections.Concurrent;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// A connection storm on the bare socket (<c>Relay:Mqtt:OwnTransport=true</c>), as the bench's <c>idle</c> scenario makes
/// one: thousands of clients connect and subscribe at once, each SUBSCRIBE followed by a PINGREQ in the same segment.
/// Every client must get its CONNACK, SUBACK and PINGRESP while the connection stays open: a client whose answer never
/// came (its connection's reader or writer lost a wake-up) or whose connection the server closed fails the test, with
/// which of the two it was.
/// </summary>
public sealed class MqttBareSocketStormTests(BareSocketServerFixture fixture) : IClassFixture<BareSocketServerFixture>
{
    private const int Clients = 3000;

    /// <summary>Clients connecting at once (the bench runs 32 per client process, two processes).</summary>
    private const int Concurrency = 128;

    // Generous: a 2-core machine shared with other builds; what fails here is an answer that never comes.
    private static readonly TimeSpan AnswerTimeout = TimeSpan.FromSeconds(60);

    private static readonly byte[] PingRequest = [0xC0, 0x00];

    [Fact]
    public async Task Storm_ThousandsConnectAndSubscribeAtOnce_EveryClientGetsSubAckAndPingResp()
    {
        var clients = new ConcurrentBag<RawMqttClient>();
        var failures = new ConcurrentQueue<string>();
        try
        {
            await Parallel.ForEachAsync(Enumerable.Range(0, Clients), new ParallelOptions { MaxDegreeOfParallelism = Concurrency }, async (i, _) =>
            {
                var client = await RawMqttClient.OpenAsync(fixture.Server);
                clients.Add(client);
                if (await Step(client, RawMqttClient.Connect(4, $"storm-{i}", keepAlive: 0), 0x20) is { } connectFailure)
                {
                    failures.Enqueue($"client {i}: CONNACK {connectFailure}");
                    return;
                }

                if (await Step(client, [.. RawMqttClient.Subscribe($"storm/{i}", qos: 0), .. PingRequest], 0x90, 0xD0) is { } subscribeFailure)
                {
                    failures.Enqueue($"client {i}: SUBACK, PINGRESP {subscribeFailure}");
                }
            });
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }
        }

        Assert.True(failures.IsEmpty, $"{failures.Count} of {Clients} clients were not answered: {string.Join("; ", failures.Take(10))}");
    }

    // Sends a request and reads the packets expected back, in order; null when they came, or what went wrong.
    private static async Task<string?> Step(RawMqttClient client, byte[] request, params byte[] expected)
    {
        await client.SendAsync(request);
        foreach (var first in expected)
        {
            (byte First, byte[] Body)? packet;
            try
            {
                packet = await client.ReadPacketAsync(AnswerTimeout);
            }
            catch (OperationCanceledException)
            {
                return $"never came (0x{first:X2} awaited {AnswerTimeout.TotalSeconds:0} s; the connection stayed open)";
            }

            if (packet is not { } answer)
            {
                return $"never came: the server closed the connection (0x{first:X2} awaited)";
            }

            if (answer.First != first)
            {
                return $"0x{answer.First:X2} came where 0x{first:X2} was awaited";
            }
        }

        return null;
    }
}

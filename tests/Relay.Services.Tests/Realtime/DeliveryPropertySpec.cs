using System.Text.Json;
using FsCheck;
using FsCheck.Fluent;
using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary>
/// Random interleavings of publishes, subscribes, abrupt disconnects and reconnects-with-since against the real
/// server: every client sees every message of its channels exactly once, in seq order, from the point it subscribed
/// (or from where it resumed), unless the server told it <c>recovered: false</c>.
/// </summary>
public abstract class DeliveryPropertySpec : IAsyncLifetime
{
    private const int Clients = 3;
    private const int Channels = 2;
    private RelayServer _server = null!;
    private int _case;

    public async Task InitializeAsync()
    {
        var settings = new Dictionary<string, string?>
        {
            ["Relay:Ingress:PublishRatePerSecond"] = "1000000",
        };
        ConfigureBus(settings);
        _server = await StartServerAsync(settings);
    }

    /// <summary>
    /// Lets a variant start the server beside what its bus needs (a Dapr sidecar, attached once the server listens);
    /// none means the server alone.
    /// </summary>
    protected virtual Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings) => RelayServer.StartAsync(settings);

    /// <summary>Lets a variant put the server on another bus; none means the in-memory bus.</summary>
    protected virtual void ConfigureBus(IDictionary<string, string?> settings)
    {
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private enum Kind
    {
        Publish,
        Subscribe,
        Disconnect,
        Reconnect,
    }

    private sealed record Op(Kind Kind, int Client, int Channel)
    {
        public override string ToString() => $"{Kind}(c{Client},ch{Channel})";
    }

    [Fact]
    public void RandomInterleavings_DeliverEveryMessageOnceInOrderOrSayNotRecovered()
    {
        var op = Gen.Frequency(
            (6, Gen.Constant(Kind.Publish)),
            (3, Gen.Constant(Kind.Subscribe)),
            (1, Gen.Constant(Kind.Disconnect)),
            (2, Gen.Constant(Kind.Reconnect)))
            .SelectMany(static kind => Gen.Choose(0, Clients - 1), static (kind, client) => (kind, client))
            .SelectMany(static _ => Gen.Choose(0, Channels - 1), static (x, channel) => new Op(x.kind, x.client, channel));
        var scenarios = Gen.ListOf(op).Select(static ops => ops.Take(40).ToArray()).ToArbitrary();
        var property = Prop.ForAll(scenarios, ops => RunScenarioAsync(ops).GetAwaiter().GetResult());
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(25), property);
    }

    private sealed class ClientModel
    {
        public TestSocket? Socket { get; set; }

        /// <summary>Per channel: the epoch and the next seq this client must see; absent when not subscribed.</summary>
        public Dictionary<string, (string Epoch, long Next)> Subscriptions { get; } = [];
    }

    private async Task<bool> RunScenarioAsync(Op[] ops)
    {
        var prefix = $"prop{Interlocked.Increment(ref _case)}:";
        var clients = Enumerable.Range(0, Clients).Select(static _ => new ClientModel()).ToArray();
        var published = new Dictionary<string, long>();
        await using var publisher = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        try
        {
            foreach (var (kind, index, channelIndex) in ops)
            {
                var client = clients[index];
                var channel = prefix + channelIndex;
                switch (kind)
                {
                    case Kind.Publish:
                        var ack = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = channel, ["data"] = index });
                        var seq = ack.GetProperty("seq").GetInt64();
                        Assert.Equal(published.GetValueOrDefault(channel) + 1, seq);
                        published[channel] = seq;
                        break;
                    case Kind.Subscribe when client.Socket is not null && !client.Subscriptions.ContainsKey(channel):
                        await SubscribeAsync(client, channel, since: null);
                        break;
                    case Kind.Disconnect when client.Socket is not null:
                        await PumpAsync(client, TimeSpan.FromMilliseconds(30));
                        client.Socket.Socket.Abort();
                        await client.Socket.DisposeAsync();
                        client.Socket = null;
                        break;
                    case Kind.Reconnect:
                        if (client.Socket is not null)
                        {
                            await PumpAsync(client, TimeSpan.FromMilliseconds(30));
                            client.Socket.Socket.Abort();
                            await client.Socket.DisposeAsync();
                        }

                        client.Socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
                        foreach (var (name, (epoch, next)) in client.Subscriptions.ToList())
                        {
                            client.Subscriptions.Remove(name);
                            await SubscribeAsync(client, name, (epoch, next - 1));
                        }

                        break;
                    default:
                        break;
                }
            }

            // Every live subscription must catch up with everything published.
            foreach (var client in clients.Where(static c => c.Socket is not null))
            {
                var deadline = DateTime.UtcNow.AddSeconds(10);
                while (client.Subscriptions.Any(s => s.Value.Next <= published.GetValueOrDefault(s.Key)))
                {
                    Assert.True(DateTime.UtcNow < deadline, "a subscriber never caught up: " + string.Join(", ", client.Subscriptions.Select(s => $"{s.Key} next {s.Value.Next} of {published.GetValueOrDefault(s.Key)}")));
                    await PumpAsync(client, TimeSpan.FromMilliseconds(100));
                }
            }

            return true;
        }
        finally
        {
            foreach (var client in clients)
            {
                if (client.Socket is not null)
                {
                    await client.Socket.DisposeAsync();
                }
            }
        }
    }

    private static async Task SubscribeAsync(ClientModel client, string channel, (string Epoch, long Seq)? since)
    {
        var request = new Dictionary<string, object?> { ["type"] = "subscribe", ["channel"] = channel };
        if (since is { } at)
        {
            request["since"] = new { epoch = at.Epoch, seq = at.Seq };
        }

        var ok = await client.Socket!.RequestAsync(request);
        Assert.True(ok.GetProperty("type").GetString() == "ok", ok.GetRawText());
        var epoch = ok.GetProperty("epoch").GetString()!;
        var recovered = ok.GetProperty("recovered").GetBoolean();
        if (since is not null)
        {
            // History here is far larger than a scenario, so resuming in the same epoch must always recover.
            Assert.True(recovered, "resume was not recovered: " + ok.GetRawText());
        }

        var next = recovered ? since!.Value.Seq + 1 : ok.GetProperty("seq").GetInt64() + 1;
        client.Subscriptions[channel] = (epoch, next);
    }

    /// <summary>Reads whatever arrives until the socket is quiet, checking each message against the model.</summary>
    private static async Task PumpAsync(ClientModel client, TimeSpan idle)
    {
        while (true)
        {
            JsonElement frame;
            try
            {
                frame = await client.Socket!.ReceiveAsync(idle);
            }
            catch (TimeoutException)
            {
                return;
            }

            if (frame.GetProperty("type").GetString() != "message")
            {
                continue;
            }

            var channel = frame.GetProperty("channel").GetString()!;
            Assert.True(client.Subscriptions.TryGetValue(channel, out var expected), "message on a channel not subscribed: " + frame.GetRawText());
            Assert.Equal(expected.Epoch, frame.GetProperty("epoch").GetString());
            Assert.Equal(expected.Next, frame.GetProperty("seq").GetInt64());
            client.Subscriptions[channel] = (expected.Epoch, expected.Next + 1);
        }
    }
}

using System.Text;
using Relay.Testing;

namespace Relay.Services.Tests.Standalone;

/// <summary>
/// Relay embedded in an app with a synchronisation context (a UI app, a test framework): a node started from that
/// context serves its clients while the context's one thread is blocked, and posts no work to it.
/// </summary>
public sealed class SynchronizationContextTests
{
    private const int Messages = 20;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData("own")]
    [InlineData("kestrel")]
    public async Task StartedFromContext_ContextBlocked_MqttAndWebSocketClientsAllAnswered_NothingPostedToIt(string transport)
    {
        var settings = ServerFixture.Settings();
        if (transport == "kestrel")
        {
            settings["Relay:Ingress:OwnTransport"] = "false";
            settings["Relay:Mqtt:OwnTransport"] = "false";
        }

        using var context = new SingleThreadSynchronizationContext();
        var server = await context.RunAsync(() => RelayServer.StartAsync(settings)).WaitAsync(TimeSpan.FromSeconds(90));
        try
        {
            string[] outcomes;
            int posted;
            using (context.Block(TimeSpan.FromSeconds(90)))
            {
                // The context's thread is blocked from here on, as a test's waiting synchronously: a server continuation
                // that captured the context when the node started now waits for it.
                var before = context.Posted;
                var clients = new List<Task<string>>();
                for (var i = 0; i < 4; i++)
                {
                    var n = i;
                    clients.Add(Task.Run(() => MqttAsync(server, n)));
                    clients.Add(Task.Run(() => WebSocketAsync(server, n)));
                }

                outcomes = await Task.WhenAll(clients).WaitAsync(TimeSpan.FromSeconds(90));
                posted = context.Posted - before;
            }

            Assert.True(outcomes.All(outcome => outcome == "answered"), string.Join("; ", outcomes));
            Assert.True(posted == 0, $"{posted} callbacks were posted to the blocked context");
        }
        finally
        {
            await server.DisposeAsync();
        }
    }

    // An MQTT 3.1.1 client subscribes to its topic at QoS 1, publishes to it at QoS 1 and reads every PUBACK and every message.
    private static async Task<string> MqttAsync(RelayServer server, int n)
    {
        try
        {
            await using var client = await RawMqttClient.OpenAsync(server);
            await client.ConnectAsync(4, $"ctx-{n}-{Guid.NewGuid():N}"[..20], timeout: Timeout);
            var topic = $"ctx/mqtt/{n}";
            await client.SendAsync(RawMqttClient.Subscribe(topic));
            await client.ExpectAckAsync(0x90, 1, Timeout);
            var acks = 0;
            var messages = 0;
            for (var id = (ushort)1; id <= Messages; id++)
            {
                var name = Encoding.UTF8.GetBytes(topic);
                byte[] body = [0, (byte)name.Length, .. name, (byte)(id >> 8), (byte)id, .. "hello"u8];
                await client.SendAsync([0x32, (byte)body.Length, .. body]);
            }

            while (acks < Messages || messages < Messages)
            {
                if (await client.ReadPacketAsync(Timeout) is not { } packet)
                {
                    return $"MQTT client {n}: closed after {acks} PUBACKs and {messages} messages";
                }

                if (packet.First == 0x40)
                {
                    acks++;
                }
                else if ((packet.First & 0xF0) == 0x30)
                {
                    messages++;
                    if ((packet.First & 0x06) != 0)
                    {
                        await client.SendAsync([0x40, 2, packet.Body[2 + ((packet.Body[0] << 8) | packet.Body[1])], packet.Body[3 + ((packet.Body[0] << 8) | packet.Body[1])]]);
                    }
                }
            }

            return "answered";
        }
        catch (Exception ex) when (ex is OperationCanceledException or TimeoutException or InvalidOperationException)
        {
            return $"MQTT client {n}: no answer in {Timeout.TotalSeconds} s ({ex.GetType().Name}: {ex.Message})";
        }
    }

    // A WebSocket client subscribes to its channel, publishes to it and reads every reply and every message.
    private static async Task<string> WebSocketAsync(RelayServer server, int n)
    {
        try
        {
            await using var socket = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key)).WaitAsync(Timeout);
            var channel = $"ctx:ws:{n}";
            var subscribed = await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel });
            if (subscribed.GetProperty("type").GetString() != "ok")
            {
                return $"WebSocket client {n}: subscribe answered {subscribed}";
            }

            for (var i = 0; i < Messages; i++)
            {
                var published = await socket.RequestAsync(new() { ["type"] = "publish", ["channel"] = channel, ["data"] = i });
                if (published.GetProperty("type").GetString() != "ok")
                {
                    return $"WebSocket client {n}: publish answered {published}";
                }
            }

            for (var i = 0; i < Messages; i++)
            {
                await socket.ReceiveMessageAsync(Timeout);
            }

            return "answered";
        }
        catch (Exception ex) when (ex is OperationCanceledException or TimeoutException or System.Net.WebSockets.WebSocketException)
        {
            return $"WebSocket client {n}: no answer in {Timeout.TotalSeconds} s ({ex.GetType().Name}: {ex.Message})";
        }
    }
}

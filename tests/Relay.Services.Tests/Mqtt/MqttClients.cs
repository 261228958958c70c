using System.Collections.Concurrent;
using System.Text;
using System.Threading.Channels;
using MQTTnet;
using MQTTnet.Formatter;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>MQTTnet clients (an MQTT implementation nobody on the team wrote) connected to a test server, over TCP or WebSocket.</summary>
internal static class MqttClients
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    /// <summary>User name and password for a key <c>APPID.KEYID:SECRET</c>.</summary>
    public static (string User, string Password) Credentials(string key)
    {
        var colon = key.IndexOf(':', StringComparison.Ordinal);
        return (key[..colon], key[(colon + 1)..]);
    }

    public static MqttClientOptionsBuilder Options(RelayServer server, MqttProtocolVersion version, string? key = RelayServer.Key, string? clientId = null, bool webSocket = false)
    {
        var builder = new MqttClientOptionsBuilder().WithProtocolVersion(version).WithCleanSession().WithTimeout(Timeout)
            .WithClientId(clientId ?? "mqttnet-" + Guid.NewGuid().ToString("N")[..12]);
        builder = webSocket
            ? builder.WithWebSocketServer(o => o.WithUri(server.MqttWebSocketUri.ToString()))
            : builder.WithTcpServer("127.0.0.1", server.MqttPort!.Value);
        if (key is not null)
        {
            var (user, password) = Credentials(key);
            builder = builder.WithCredentials(user, password);
        }

        return builder;
    }

    public static async Task<Connected> ConnectAsync(RelayServer server, MqttProtocolVersion version, string? key = RelayServer.Key, string? clientId = null, bool webSocket = false)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var connected = new Connected(client);
        await client.ConnectAsync(Options(server, version, key, clientId, webSocket).Build()).WaitAsync(Timeout);
        return connected;
    }

    /// <summary>A connected client and what it received, in order.</summary>
    internal sealed class Connected : IAsyncDisposable
    {
        private readonly Channel<MqttApplicationMessage> _received = Channel.CreateUnbounded<MqttApplicationMessage>();

        public Connected(IMqttClient client)
        {
            Client = client;
            client.ApplicationMessageReceivedAsync += e =>
            {
                _received.Writer.TryWrite(e.ApplicationMessage);
                return Task.CompletedTask;
            };
        }

        public IMqttClient Client { get; }

        public ConcurrentQueue<string> Log { get; } = new();

        public async Task<MqttApplicationMessage> NextAsync(TimeSpan? timeout = null) =>
            await _received.Reader.ReadAsync().AsTask().WaitAsync(timeout ?? Timeout);

        public bool TryNext(out MqttApplicationMessage? message) => _received.Reader.TryRead(out message);

        /// <summary>The payloads received (as text), in order, up to and with the first that is <paramref name="last"/>.</summary>
        public async Task<List<string>> PayloadsUntilAsync(string last, TimeSpan? timeout = null)
        {
            var payloads = new List<string>();
            do
            {
                payloads.Add(Encoding.UTF8.GetString((await NextAsync(timeout)).Payload));
            }
            while (payloads[^1] != last);

            return payloads;
        }

        public async ValueTask DisposeAsync()
        {
            try
            {
                if (Client.IsConnected)
                {
                    await Client.DisconnectAsync().WaitAsync(Timeout);
                }
            }
            catch (Exception ex) when (ex is MQTTnet.Exceptions.MqttCommunicationException or TimeoutException or OperationCanceledException)
            {
                // Gone already.
            }

            Client.Dispose();
        }
    }
}

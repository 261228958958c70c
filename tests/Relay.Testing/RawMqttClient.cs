using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Relay.Testing;

/// <summary>An MQTT client on a bare socket, for what well-behaved clients never send: bytes in, bytes out, no rules.</summary>
public sealed class RawMqttClient : IAsyncDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private readonly TcpClient _tcp;

    private RawMqttClient(IPAddress? source) => _tcp = source is null ? new TcpClient() : new TcpClient(new IPEndPoint(source, 0));

    public NetworkStream Stream => _tcp.GetStream();

    /// <summary>
    /// Opens a TCP connection to the MQTT port, from the loopback address <paramref name="source"/> when given, with a
    /// receive buffer of <paramref name="receiveBufferBytes"/> set before connecting (so the window it advertises from
    /// the handshake on is that small, as a small device's) when given.
    /// </summary>
    public static Task<RawMqttClient> OpenAsync(RelayServer server, int? port = null, IPAddress? source = null, int? receiveBufferBytes = null) =>
        OpenAsync(port ?? server.MqttPort!.Value, source, receiveBufferBytes);

    /// <summary>Opens a TCP connection to the MQTT port <paramref name="port"/> on 127.0.0.1 (a service process's).</summary>
    public static async Task<RawMqttClient> OpenAsync(int port, IPAddress? source = null, int? receiveBufferBytes = null)
    {
        var client = new RawMqttClient(source);
        if (receiveBufferBytes is { } bytes)
        {
            client._tcp.Client.ReceiveBufferSize = bytes;
        }

        await client._tcp.ConnectAsync("127.0.0.1", port).WaitAsync(Timeout);
        return client;
    }

    /// <summary>
    /// A CONNECT with the root key, the given keep-alive (hand-encoded, not by Relay's codec): a clean session, or with
    /// <paramref name="sessionExpiry"/> a persistent one (clean session 0; MQTT 5: Clean Start 0 and that Session Expiry Interval);
    /// with <paramref name="will"/>, that last will; MQTT 5 with <paramref name="topicAliasMaximum"/> above 0, that Topic
    /// Alias Maximum (the aliases the server may send), and with <paramref name="maximumPacketSize"/> that Maximum Packet Size.
    /// </summary>
    public static byte[] Connect(byte level, string clientId, ushort keepAlive = 60, string key = RelayServer.Key, uint? sessionExpiry = null, RawMqttWill? will = null, ushort topicAliasMaximum = 0, uint? maximumPacketSize = null)
    {
        var colon = key.IndexOf(':', StringComparison.Ordinal);
        var body = new List<byte>();
        void Text(string s)
        {
            var bytes = Encoding.UTF8.GetBytes(s);
            body.Add((byte)(bytes.Length >> 8));
            body.Add((byte)bytes.Length);
            body.AddRange(bytes);
        }

        Text("MQTT");
        body.Add(level);
        var flags = sessionExpiry is null ? 0xC2 : 0xC0;
        if (will is not null)
        {
            flags |= 0x04 | (will.Qos << 3) | (will.Retain ? 0x20 : 0);
        }

        body.Add((byte)flags);
        body.Add((byte)(keepAlive >> 8));
        body.Add((byte)keepAlive);
        if (level == 5)
        {
            var properties = new List<byte>();
            if (sessionExpiry is { } expiry)
            {
                properties.AddRange([0x11, (byte)(expiry >> 24), (byte)(expiry >> 16), (byte)(expiry >> 8), (byte)expiry]);
            }

            if (topicAliasMaximum > 0)
            {
                properties.AddRange([0x22, (byte)(topicAliasMaximum >> 8), (byte)topicAliasMaximum]);
            }

            if (maximumPacketSize is { } maximum)
            {
                properties.AddRange([0x27, (byte)(maximum >> 24), (byte)(maximum >> 16), (byte)(maximum >> 8), (byte)maximum]);
            }

            body.Add((byte)properties.Count);
            body.AddRange(properties);
        }

        Text(clientId);
        if (will is not null)
        {
            if (level == 5)
            {
                // Will properties: the Will Delay Interval, when there is one.
                body.AddRange(will.DelaySeconds == 0 ? [0] : [5, 0x18, (byte)(will.DelaySeconds >> 24), (byte)(will.DelaySeconds >> 16), (byte)(will.DelaySeconds >> 8), (byte)will.DelaySeconds]);
            }

            Text(will.Topic);
            Text(will.Payload);
        }

        Text(key[..colon]);
        Text(key[(colon + 1)..]);
        return [0x10, .. RemainingLength(body.Count), .. body];
    }

    // A packet's Remaining Length: seven bits a byte, the high bit set on every byte but the last (MQTT §1.5.5).
    private static List<byte> RemainingLength(int remaining)
    {
        var length = new List<byte>();
        do
        {
            var b = (byte)(remaining & 0x7F);
            remaining >>= 7;
            length.Add(remaining > 0 ? (byte)(b | 0x80) : b);
        }
        while (remaining > 0);
        return length;
    }

    /// <summary>A SUBSCRIBE (packet id 1) of one filter at <paramref name="qos"/>, MQTT 3.1.1 or (<paramref name="level"/> 5) MQTT 5 with no properties.</summary>
    public static byte[] Subscribe(string filter, byte qos = 1, byte level = 4)
    {
        var bytes = Encoding.UTF8.GetBytes(filter);
        byte[] properties = level == 5 ? [0] : [];
        var remaining = 2 + properties.Length + 2 + bytes.Length + 1;
        return [0x82, (byte)remaining, 0, 1, .. properties, (byte)(bytes.Length >> 8), (byte)bytes.Length, .. bytes, qos];
    }

    public Task SendAsync(byte[] bytes) => Stream.WriteAsync(bytes).AsTask().WaitAsync(Timeout);

    public Task SendHexAsync(string hex) => SendAsync(Convert.FromHexString(hex.Replace(" ", string.Empty, StringComparison.Ordinal)));

    /// <summary>
    /// A QoS 2 PUBLISH of packet id <paramref name="id"/> (MQTT 5: no properties), with DUP when sent again.
    /// </summary>
    public static byte[] QosTwoPublish(string topic, ushort id, bool dup = false, string payload = "x", byte level = 5) =>
        Publish(topic, qos: 2, id, payload, level, dup: dup);

    /// <summary>
    /// A PUBLISH at <paramref name="qos"/> (with packet id <paramref name="id"/> above QoS 0) for a connection at
    /// <paramref name="level"/>: MQTT 5 with its properties (a Topic Alias when <paramref name="alias"/> is given, else
    /// none), with DUP when sent again.
    /// </summary>
    public static byte[] Publish(string topic, byte qos, ushort id = 0, string payload = "x", byte level = 4, ushort? alias = null, bool dup = false)
    {
        var name = Encoding.UTF8.GetBytes(topic);
        byte[] packetId = qos > 0 ? [(byte)(id >> 8), (byte)id] : [];
        byte[] properties = level < 5 ? [] : alias is { } a ? [3, 0x23, (byte)(a >> 8), (byte)a] : [0];
        byte[] body = [(byte)(name.Length >> 8), (byte)name.Length, .. name, .. packetId, .. properties, .. Encoding.UTF8.GetBytes(payload)];
        return [(byte)(0x30 | (dup ? 0x08 : 0) | (qos << 1)), .. RemainingLength(body.Length), .. body];
    }

    /// <summary>
    /// Connects at <paramref name="level"/> (a persistent session with <paramref name="sessionExpiry"/>, see
    /// <see cref="Connect"/>; with <paramref name="will"/> its last will), checks the CONNACK says accepted and returns whether it says a session is present.
    /// </summary>
    public async Task<bool> ConnectAsync(byte level, string clientId, ushort keepAlive = 60, uint? sessionExpiry = null, TimeSpan? timeout = null, RawMqttWill? will = null, ushort topicAliasMaximum = 0, uint? maximumPacketSize = null)
    {
        await SendAsync(Connect(level, clientId, keepAlive, sessionExpiry: sessionExpiry, will: will, topicAliasMaximum: topicAliasMaximum, maximumPacketSize: maximumPacketSize));
        var (type, body) = await ReadPacketAsync(timeout) ?? throw new InvalidOperationException("closed before CONNACK");
        if (type != 0x20 || body[1] != 0)
        {
            throw new InvalidOperationException($"CONNACK refused: {Convert.ToHexString(body)}");
        }

        return (body[0] & 1) == 1;
    }

    /// <summary>Reads the next packet and checks it is <paramref name="first"/> (e.g. 0x50 PUBREC) for packet id <paramref name="id"/>; returns its reason code (0 when it has none).</summary>
    public async Task<byte> ExpectAckAsync(byte first, ushort id, TimeSpan? timeout = null)
    {
        var packet = await ReadPacketAsync(timeout);
        if (packet is not { } ack || ack.First != first || ack.Body.Length < 2 || ((ack.Body[0] << 8) | ack.Body[1]) != id)
        {
            throw new InvalidOperationException($"expected packet 0x{first:X2} for id {id}, got {(packet is { } p ? $"0x{p.First:X2} {Convert.ToHexString(p.Body)}" : "the connection closed")}");
        }

        return ack.Body.Length > 2 ? ack.Body[2] : (byte)0;
    }

    /// <summary>The next packet (first byte and body), or null when the server closed the connection.</summary>
    public async Task<(byte First, byte[] Body)?> ReadPacketAsync(TimeSpan? timeout = null)
    {
        using var cancel = new CancellationTokenSource(timeout ?? Timeout);
        var first = new byte[1];
        try
        {
            if (await Stream.ReadAsync(first, cancel.Token) == 0)
            {
                return null;
            }

            var length = 0;
            for (var shift = 0; ; shift += 7)
            {
                var b = new byte[1];
                await Stream.ReadExactlyAsync(b, cancel.Token);
                length |= (b[0] & 0x7F) << shift;
                if ((b[0] & 0x80) == 0)
                {
                    break;
                }
            }

            var body = new byte[length];
            await Stream.ReadExactlyAsync(body, cancel.Token);
            return (first[0], body);
        }
        catch (Exception ex) when (ex is IOException or EndOfStreamException)
        {
            return null;
        }
    }

    /// <summary>True when nothing arrives (and the connection stays open) for <paramref name="wait"/>.</summary>
    public async Task<bool> NothingWithinAsync(TimeSpan wait)
    {
        try
        {
            return await ReadPacketAsync(wait) is null ? throw new InvalidOperationException("the server closed the connection") : false;
        }
        catch (OperationCanceledException)
        {
            return true;
        }
    }

    /// <summary>Reads until the server closes; returns the packets it sent before (or throws when it does not close in time).</summary>
    public async Task<List<(byte First, byte[] Body)>> ReadUntilClosedAsync(TimeSpan? timeout = null)
    {
        var packets = new List<(byte, byte[])>();
        var deadline = DateTime.UtcNow + (timeout ?? Timeout);
        while (await ReadPacketAsync(deadline - DateTime.UtcNow) is { } packet)
        {
            packets.Add(packet);
        }

        return packets;
    }

    public ValueTask DisposeAsync()
    {
        _tcp.Dispose();
        return ValueTask.CompletedTask;
    }
}

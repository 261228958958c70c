using System.Diagnostics;
using System.Globalization;
using System.Text;
using Relay.Testing;

namespace Relay.Integration.Tests.Distributed;

/// <summary>
/// An MQTT client as a device runs one, over <see cref="RawMqttClient"/>: a persistent session (Clean Start 0 / clean
/// session 0, expiry 300 s) on one of two nodes; when its connection drops it connects to the other node with the same
/// client id and goes on. As a publisher it keeps its in-flight packet ids and, on the new connection, resends every
/// PUBLISH not acknowledged (DUP) and every PUBREL not completed before anything new (MQTT §4.4). As a subscriber it
/// keeps the QoS 2 packet ids it answered PUBREC and not yet released (MQTT "method B" on the client): a PUBLISH with one
/// of them is a resend and is not delivered again; every message it delivers (the payload, a number) is recorded.
/// </summary>
internal sealed class MqttDevice(string clientId, byte level, int[] ports, int node, Action<string> log) : IAsyncDisposable
{
    private const int MaxInFlight = 32;
    private const uint SessionExpiry = 300;

    private readonly Lock _gate = new();
    private readonly SemaphoreSlim _write = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private RawMqttClient? _client;
    private bool _connected;
    private Task? _reading;

    // Publisher: PUBLISH sent, no PUBACK/PUBREC yet (packet id → number); PUBREL sent, no PUBCOMP yet.
    private readonly Dictionary<ushort, int> _unacknowledged = [];
    private readonly HashSet<ushort> _releasing = [];
    private readonly Queue<int> _again = new();
    private ushort _lastId;
    private byte _qos;
    private string _topic = "";

    // Subscriber: QoS 2 packet ids answered PUBREC and not released.
    private readonly HashSet<ushort> _received = [];

    public string ClientId { get; } = clientId;

    private readonly List<int> _delivered = [];

    /// <summary>The numbers delivered to the application so far, in the order they were (subscriber).</summary>
    public int[] Delivered()
    {
        lock (_gate)
        {
            return [.. _delivered];
        }
    }

    /// <summary>Numbers acknowledged to the publisher (PUBACK, or PUBREC without a failure code): index = number.</summary>
    public bool[] Acknowledged { get; private set; } = [];

    /// <summary>Numbers the publisher sent again (DUP) on a new connection: their order against others is not promised.</summary>
    public HashSet<int> Resent { get; } = [];

    public int Reconnects { get; private set; }

    /// <summary>Whether a CONNACK on a new connection said no session present (the session was lost).</summary>
    public bool SessionLost { get; private set; }

    /// <summary>The node (index into the ports) the device is connected to.</summary>
    public int Node => node;

    /// <summary>Connects and, as a subscriber, subscribes <paramref name="filter"/> at <paramref name="qos"/>; then reads until disposed.</summary>
    public async Task StartAsync(string? filter = null, byte qos = 0)
    {
        await ConnectAsync(expectPresent: false);
        if (filter is not null)
        {
            var name = Encoding.UTF8.GetBytes(filter);
            byte[] body = [0, 1, .. level == 5 ? [(byte)0] : Array.Empty<byte>(), (byte)(name.Length >> 8), (byte)name.Length, .. name, qos];
            await _client!.SendAsync(Packet(0x82, body));
            var (type, suback) = await _client.ReadPacketAsync() ?? throw new InvalidOperationException($"{ClientId}: closed before SUBACK");
            if (type != 0x90 || suback[^1] != qos)
            {
                throw new InvalidOperationException($"{ClientId}: SUBACK {Convert.ToHexString(suback)} (type 0x{type:X2}) for QoS {qos}");
            }
        }

        _connected = true;
        _reading = Task.Run(ReadAsync);
    }

    /// <summary>
    /// Publishes 1..<paramref name="total"/> (payload: the number) to <paramref name="topic"/> at <paramref name="qos"/>,
    /// <paramref name="perSecond"/> a second, up to 32 in flight, until every one is acknowledged (a refused one is sent
    /// again with a new packet id).
    /// </summary>
    public async Task PublishAsync(string topic, byte qos, int total, int perSecond, CancellationToken cancellationToken)
    {
        (_topic, _qos) = (topic, qos);
        Acknowledged = new bool[total + 1];
        var clock = Stopwatch.StartNew();
        var next = 1;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int n;
            ushort id;
            RawMqttClient client;
            lock (_gate)
            {
                if (next > total && _unacknowledged.Count == 0 && _again.Count == 0)
                {
                    return;
                }

                var due = Math.Min(total, (int)(clock.ElapsedMilliseconds * perSecond / 1000));
                if (!_connected || _unacknowledged.Count + _releasing.Count >= MaxInFlight || (_again.Count == 0 && next > due))
                {
                    n = 0;
                    id = 0;
                    client = null!;
                }
                else
                {
                    n = _again.Count > 0 ? _again.Dequeue() : next++;
                    id = NextId();
                    _unacknowledged[id] = n;
                    client = _client!;
                }
            }

            if (n == 0)
            {
                await Task.Delay(2, cancellationToken);
                continue;
            }

            await SendAsync(client, Publish(id, n, dup: false));
        }
    }

    private ushort NextId()
    {
        do
        {
            _lastId = _lastId == ushort.MaxValue ? (ushort)1 : (ushort)(_lastId + 1);
        }
        while (_unacknowledged.ContainsKey(_lastId) || _releasing.Contains(_lastId));

        return _lastId;
    }

    private byte[] Publish(ushort id, int n, bool dup)
    {
        var name = Encoding.UTF8.GetBytes(_topic);
        byte[] body = [(byte)(name.Length >> 8), (byte)name.Length, .. name, (byte)(id >> 8), (byte)id, .. level == 5 ? [(byte)0] : Array.Empty<byte>(), .. Encoding.ASCII.GetBytes(n.ToString(CultureInfo.InvariantCulture))];
        return Packet((byte)(0x30 | (dup ? 0x08 : 0) | (_qos << 1)), body);
    }

    private static byte[] Ack(byte type, ushort id) => [type, 2, (byte)(id >> 8), (byte)id];

    private static byte[] Packet(byte first, byte[] body)
    {
        var packet = new List<byte>(body.Length + 5) { first };
        var length = body.Length;
        do
        {
            var b = (byte)(length & 0x7F);
            length >>= 7;
            packet.Add(length > 0 ? (byte)(b | 0x80) : b);
        }
        while (length > 0);

        packet.AddRange(body);
        return [.. packet];
    }

    // A write on a connection that is gone is dropped: the reader sees it closed and the device connects again.
    private async Task SendAsync(RawMqttClient client, byte[] packet)
    {
        await _write.WaitAsync();
        try
        {
            if (ReferenceEquals(client, _client))
            {
                await client.SendAsync(packet);
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or TimeoutException or InvalidOperationException)
        {
            // Closed under us.
        }
        finally
        {
            _write.Release();
        }
    }

    private async Task<bool> ConnectAsync(bool expectPresent)
    {
        var client = await RawMqttClient.OpenAsync(ports[node]);
        try
        {
            var present = await client.ConnectAsync(level, ClientId, keepAlive: 60, sessionExpiry: SessionExpiry, timeout: TimeSpan.FromSeconds(30));
            if (expectPresent && !present)
            {
                SessionLost = true;
                log($"{ClientId}: CONNACK on node {node} says no session present");
            }

            _client = client;
            return present;
        }
        catch
        {
            await client.DisposeAsync();
            throw;
        }
    }

    private async Task ReadAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            (byte First, byte[] Body)? packet;
            try
            {
                packet = await _client!.ReadPacketAsync(TimeSpan.FromMinutes(10));
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or InvalidOperationException)
            {
                packet = null;
            }

            if (packet is { } p)
            {
                await HandleAsync(p.First, p.Body);
                continue;
            }

            if (_stop.IsCancellationRequested)
            {
                return;
            }

            await ReconnectAsync();
        }
    }

    // The connection dropped (its node was killed): the same client id on the other node, then what was in flight again.
    private async Task ReconnectAsync()
    {
        lock (_gate)
        {
            _connected = false;
        }

        var old = _client!;
        await _write.WaitAsync();
        try
        {
            await old.DisposeAsync();
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (true)
            {
                node = 1 - node;
                try
                {
                    var present = await ConnectAsync(expectPresent: true);
                    Reconnects++;
                    log($"{ClientId}: connected again on node {node} (session present: {present}) at {DateTime.UtcNow:HH:mm:ss.fff}");
                    break;
                }
                catch (Exception ex) when (DateTime.UtcNow < deadline && ex is IOException or System.Net.Sockets.SocketException or InvalidOperationException or TimeoutException or OperationCanceledException)
                {
                    await Task.Delay(200);
                }
            }

            // MQTT §4.4: unacknowledged PUBLISH again with DUP and its packet id, unfinished PUBREL again, in order.
            List<(ushort Id, int N)> publishes;
            List<ushort> releases;
            lock (_gate)
            {
                publishes = [.. _unacknowledged.OrderBy(static e => e.Value).Select(static e => (e.Key, e.Value))];
                releases = [.. _releasing];
                foreach (var (_, n) in publishes)
                {
                    Resent.Add(n);
                }
            }

            foreach (var id in releases)
            {
                await _client!.SendAsync(Ack(0x62, id));
            }

            foreach (var (id, n) in publishes)
            {
                await _client!.SendAsync(Publish(id, n, dup: true));
            }

            log($"{ClientId}: resent {publishes.Count} PUBLISH (DUP) and {releases.Count} PUBREL");
            lock (_gate)
            {
                _connected = true;
            }
        }
        finally
        {
            _write.Release();
        }
    }

    private async Task HandleAsync(byte first, byte[] body)
    {
        var id = body.Length >= 2 ? (ushort)((body[0] << 8) | body[1]) : (ushort)0;
        var failed = level == 5 && body.Length > 2 && body[2] >= 0x80;
        var client = _client!;
        switch (first & 0xF0)
        {
            case 0x30:
                await ReceiveAsync(client, first, body);
                break;
            case 0x40:
                lock (_gate)
                {
                    if (_unacknowledged.Remove(id, out var n))
                    {
                        Settle(n, failed);
                    }
                }

                break;
            case 0x50:
                bool release;
                lock (_gate)
                {
                    release = _releasing.Contains(id);
                    if (_unacknowledged.Remove(id, out var n))
                    {
                        Settle(n, failed);
                        release = !failed && _releasing.Add(id);
                    }
                }

                if (release)
                {
                    await SendAsync(client, Ack(0x62, id));
                }

                break;
            case 0x60:
                lock (_gate)
                {
                    _received.Remove(id);
                }

                await SendAsync(client, Ack(0x70, id));
                break;
            case 0x70:
                lock (_gate)
                {
                    _releasing.Remove(id);
                }

                break;
        }
    }

    // Under the gate: a refused publish goes again later with a new packet id.
    private void Settle(int n, bool failed)
    {
        if (failed)
        {
            log($"{ClientId}: publish {n} refused");
            _again.Enqueue(n);
        }
        else
        {
            Acknowledged[n] = true;
        }
    }

    private async Task ReceiveAsync(RawMqttClient client, byte first, byte[] body)
    {
        var qos = (first >> 1) & 3;
        var at = 2 + ((body[0] << 8) | body[1]);
        ushort id = 0;
        if (qos > 0)
        {
            id = (ushort)((body[at] << 8) | body[at + 1]);
            at += 2;
        }

        if (level == 5)
        {
            var length = 0;
            for (var shift = 0; ; shift += 7)
            {
                var b = body[at++];
                length |= (b & 0x7F) << shift;
                if ((b & 0x80) == 0)
                {
                    break;
                }
            }

            at += length;
        }

        var n = int.Parse(Encoding.ASCII.GetString(body, at, body.Length - at), CultureInfo.InvariantCulture);
        lock (_gate)
        {
            // QoS 2: a PUBLISH with a packet id answered PUBREC and not released is the same message again.
            if (qos < 2 || _received.Add(id))
            {
                _delivered.Add(n);
            }
        }

        if (qos > 0)
        {
            await SendAsync(client, Ack(qos == 1 ? (byte)0x40 : (byte)0x50, id));
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_client is { } client)
        {
            await client.DisposeAsync();
        }

        if (_reading is { } reading)
        {
            await reading.WaitAsync(TimeSpan.FromSeconds(70)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }
}

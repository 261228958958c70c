using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Relay.Client;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// Clients nobody on the team wrote, as processes: mosquitto_sub and mosquitto_pub (Debian's mosquitto-clients, MQTT
/// 3.1.1 and 5) and MQTT.js (npm mqtt, over TCP and WebSocket), against a real node, with MQTTnet and Relay's
/// WebSocket client on the other side.
/// </summary>
public sealed class MqttInteropTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly RelayServer _server = fixture.Server;

    private string Port => _server.MqttPort!.Value.ToString(CultureInfo.InvariantCulture);

    public static TheoryData<string> MosquittoVersions => ["mqttv311", "mqttv5"];

    [Theory]
    [MemberData(nameof(MosquittoVersions))]
    public async Task MosquittoSub_QosOne_GetsMosquittoPubBinaryAndWebSocketJsonExactly(string version)
    {
        var topic = $"mosq/{Guid.NewGuid():N}";
        var (user, password) = MqttClients.Credentials(RelayServer.Key);
        using var sub = ClientProcess.Mosquitto("mosquitto_sub", "-h", "127.0.0.1", "-p", Port, "-u", user, "-P", password, "-V", version,
            "-t", topic, "-q", "1", "-C", "3", "-W", "20", "-d", "-F", "payload:%x");
        await sub.WaitForAsync("SUBACK", Timeout);

        byte[] binary = [0x00, 0xFF, 0x10, 0x80, 0x7F];
        var file = Path.GetTempFileName();
        try
        {
            await File.WriteAllBytesAsync(file, binary);
            using var pub = ClientProcess.Mosquitto("mosquitto_pub", "-h", "127.0.0.1", "-p", Port, "-u", user, "-P", password, "-V", version, "-t", topic, "-q", "1", "-f", file);
            Assert.True(await pub.ExitAsync(Timeout) == 0, pub.Output);
        }
        finally
        {
            File.Delete(file);
        }

        using (var pub = ClientProcess.Mosquitto("mosquitto_pub", "-h", "127.0.0.1", "-p", Port, "-u", user, "-P", password, "-V", version, "-t", topic, "-q", "0", "-m", "plain text"))
        {
            Assert.True(await pub.ExitAsync(Timeout) == 0, pub.Output);
        }

        await using var ws = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        await ws.PublishAsync(topic, new { on = true }).WaitAsync(Timeout);

        Assert.Equal("payload:00ff10807f", await sub.WaitForAsync("payload:", Timeout));
        Assert.Equal("payload:" + Convert.ToHexStringLower("plain text"u8), await sub.WaitForAsync("payload:", Timeout));
        Assert.Equal("payload:" + Convert.ToHexStringLower("{\"on\":true}"u8), await sub.WaitForAsync("payload:", Timeout));
        Assert.True(await sub.ExitAsync(Timeout) == 0, sub.Output);
    }

    [Theory]
    [MemberData(nameof(MosquittoVersions))]
    public async Task MosquittoSub_QosTwo_GetsEveryMessageOnceAtQosTwo(string version)
    {
        const int Count = 100;
        var topic = $"mosq-qos2/{Guid.NewGuid():N}";
        var (user, password) = MqttClients.Credentials(RelayServer.Key);
        using var sub = ClientProcess.Mosquitto("mosquitto_sub", "-h", "127.0.0.1", "-p", Port, "-u", user, "-P", password, "-V", version,
            "-t", topic, "-q", "2", "-C", Count.ToString(CultureInfo.InvariantCulture), "-W", "30", "-d", "-F", "payload:%p");
        await sub.WaitForAsync("SUBACK", Timeout);

        await using var ws = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        for (var i = 0; i < Count; i++)
        {
            await ws.PublishAsync(topic, i).WaitAsync(Timeout);
        }


        for (var i = 0; i < Count; i++)
        {
            Assert.Equal($"payload:{i}", await sub.WaitForAsync("payload:", Timeout));
        }

        Assert.True(await sub.ExitAsync(Timeout) == 0, sub.Output);
        Assert.Equal(Count, sub.Output.Split('\n').Count(line => line.Contains("received PUBLISH (d0, q2", StringComparison.Ordinal)));
        Assert.Equal(Count, sub.Output.Split('\n').Count(line => line.Contains("sending PUBCOMP", StringComparison.Ordinal)));
    }

    [Theory]
    [MemberData(nameof(MosquittoVersions))]
    public async Task MosquittoPubRetained_LaterMosquittoSubGetsItWithRetainFlag(string version)
    {
        var root = $"mosq-retain/{Guid.NewGuid():N}";
        var topic = root + "/x";
        var (user, password) = MqttClients.Credentials(RelayServer.Key);
        using (var pub = ClientProcess.Mosquitto("mosquitto_pub", "-h", "127.0.0.1", "-p", Port, "-u", user, "-P", password, "-V", version, "-t", topic, "-q", "1", "-r", "-m", "last value"))
        {
            Assert.True(await pub.ExitAsync(Timeout) == 0, pub.Output);
        }

        // -R would skip retained messages: this one must be one (%r prints the flag).
        using var sub = ClientProcess.Mosquitto("mosquitto_sub", "-h", "127.0.0.1", "-p", Port, "-u", user, "-P", password, "-V", version,
            "-t", root + "/+", "-q", "1", "-C", "1", "-W", "20", "-F", "retained:%r payload:%p");
        Assert.Equal("retained:1 payload:last value", await sub.WaitForAsync("payload:", Timeout));
        Assert.True(await sub.ExitAsync(Timeout) == 0, sub.Output);
    }

    [Theory]
    [MemberData(nameof(MosquittoVersions))]
    public async Task MosquittoPub_ReachesWebSocketSubscriberWithSeq(string version)
    {
        var topic = $"mosq-ws/{Guid.NewGuid():N}";
        await using var ws = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        var received = System.Threading.Channels.Channel.CreateUnbounded<Relay.Client.RelayMessage>();
        await ws.SubscribeAsync(topic, m => received.Writer.TryWrite(m)).WaitAsync(Timeout);
        var (user, password) = MqttClients.Credentials(RelayServer.Key);

        using var pub = ClientProcess.Mosquitto("mosquitto_pub", "-h", "127.0.0.1", "-p", Port, "-u", user, "-P", password, "-V", version, "-i", "mosq-device", "-t", topic, "-q", "1", "-m", "{\"temp\":21.5}");
        Assert.True(await pub.ExitAsync(Timeout) == 0, pub.Output);

        var message = await received.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        Assert.Equal(1, message.Seq);
        Assert.Equal(21.5, message.Data.GetProperty("temp").GetDouble());
        Assert.Equal("mosq-device", message.ClientId);
    }

    [Theory]
    [InlineData("mqttv311", "not authorised")]
    [InlineData("mqttv5", "Bad user name or password")]
    public async Task MosquittoPub_WrongSecret_RefusedWithTheVersionsCode(string version, string expected)
    {
        using var pub = ClientProcess.Mosquitto("mosquitto_pub", "-h", "127.0.0.1", "-p", Port, "-u", "test.root", "-P", "wrong-secret", "-V", version, "-t", "x", "-m", "x");

        Assert.NotEqual(0, await pub.ExitAsync(Timeout));
        var output = pub.Output;
        Assert.True(output.Contains(expected, StringComparison.OrdinalIgnoreCase) || output.Contains("bad user name or password", StringComparison.OrdinalIgnoreCase), output);
    }

    [Fact]
    public async Task MosquittoSub_KeyWithoutSubscribe_GetsFailedSubAck()
    {
        var (user, password) = MqttClients.Credentials(RelayServer.ChatOnlyKey);
        using var sub = ClientProcess.Mosquitto("mosquitto_sub", "-h", "127.0.0.1", "-p", Port, "-u", user, "-P", password, "-V", "mqttv5", "-t", "news/x", "-q", "1", "-W", "5", "-d");

        // MQTT 5 SUBACK reason 135 (0x87, not authorized); mosquitto_sub reports every subscription denied and exits.
        Assert.EndsWith(": 135", await sub.WaitForAsync("Subscribed (mid", Timeout), StringComparison.Ordinal);
        Assert.True(await sub.ExitAsync(Timeout) != 0 || sub.Output.Contains("denied", StringComparison.Ordinal), sub.Output);
    }

    // MQTT.js resolves the topic aliases Relay sends (MQTT 5, Topic Alias Maximum 2): three topics, each message printed
    // with its own, by name or by alias. (Debian's mosquitto_sub, libmosquitto 2.0, does not: given a Topic Alias Maximum
    // with -D, it ends with a protocol error at the first PUBLISH sent by alias alone; docs/mqtt.md.)
    [Theory]
    [InlineData("tcp")]
    [InlineData("ws")]
    public async Task MqttJs_WithTopicAliasMaximum_ResolvesEveryTopic(string transport)
    {
        const int Count = 9;
        var root = $"alias-interop/{Guid.NewGuid():N}";
        var url = transport == "ws" ? _server.MqttWebSocketUri.ToString() : $"mqtt://127.0.0.1:{Port}";
        var (user, password) = MqttClients.Credentials(RelayServer.Key);
        using var sub = ClientProcess.MqttJs(url, user, password, "5", "sub", root + "/#", Count.ToString(CultureInfo.InvariantCulture), "--aliases=2");
        await sub.WaitForAsync("subscribed", Timeout);

        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        var expected = new List<string>();
        for (var i = 0; i < Count; i++)
        {
            var topic = $"{root}/{i % 3}";
            await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload($"m{i}").WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
            expected.Add($"{topic} {Convert.ToHexStringLower(Encoding.UTF8.GetBytes($"m{i}"))}");
        }

        var received = new List<string>();
        for (var i = 0; i < Count; i++)
        {
            var message = JsonDocument.Parse(await sub.WaitForAsync("\"message\"", Timeout)).RootElement;
            received.Add($"{message.GetProperty("topic").GetString()} {message.GetProperty("hex").GetString()}");
        }

        Assert.Equal(expected, received);
        Assert.True(await sub.ExitAsync(Timeout) == 0, sub.Output);
    }

    public static TheoryData<string, string> MqttJsTransports => new()
    {
        { "4", "tcp" },
        { "5", "tcp" },
        { "4", "ws" },
        { "5", "ws" },
    };

    [Theory]
    [MemberData(nameof(MqttJsTransports))]
    public async Task MqttJs_PublishesToMqttNetAndSubscribesToWebSocket(string version, string transport)
    {
        var topic = $"mqttjs/{Guid.NewGuid():N}";
        var url = transport == "ws" ? _server.MqttWebSocketUri.ToString() : $"mqtt://127.0.0.1:{Port}";
        var (user, password) = MqttClients.Credentials(RelayServer.Key);

        // MQTT.js subscribes; a WebSocket publish and an MQTTnet binary publish reach it.
        using var sub = ClientProcess.MqttJs(url, user, password, version, "sub", topic, "2");
        Assert.Contains("[1]", await sub.WaitForAsync("subscribed", Timeout), StringComparison.Ordinal);
        await using var ws = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        await ws.PublishAsync(topic, new[] { 1, 2, 3 }).WaitAsync(Timeout);
        await using var mqttnet = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await mqttnet.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(new byte[] { 0xCA, 0xFE, 0x00 }).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);

        var first = JsonDocument.Parse(await sub.WaitForAsync("\"message\"", Timeout)).RootElement;
        Assert.Equal(Convert.ToHexStringLower("[1,2,3]"u8), first.GetProperty("hex").GetString());
        Assert.Equal(1, first.GetProperty("qos").GetInt32());
        var second = JsonDocument.Parse(await sub.WaitForAsync("\"message\"", Timeout)).RootElement;
        Assert.Equal("cafe00", second.GetProperty("hex").GetString());
        Assert.True(await sub.ExitAsync(Timeout) == 0, sub.Output);

        // MQTT.js publishes; MQTTnet receives the bytes exactly.
        await mqttnet.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        using var pub = ClientProcess.MqttJs(url, user, password, version, "pub", topic, "00010203ff", "7b7d");
        Assert.True(await pub.ExitAsync(Timeout) == 0, pub.Output);
        Assert.Equal(new byte[] { 0, 1, 2, 3, 0xFF }, (await mqttnet.NextAsync()).Payload.ToArray());
        Assert.Equal("{}"u8.ToArray(), (await mqttnet.NextAsync()).Payload.ToArray());
    }

    [Theory]
    [InlineData("4", "tcp")]
    [InlineData("5", "ws")]
    public async Task MqttJs_WrongSecret_ConnectionRefused(string version, string transport)
    {
        var url = transport == "ws" ? _server.MqttWebSocketUri.ToString() : $"mqtt://127.0.0.1:{Port}";
        using var client = ClientProcess.MqttJs(url, "test.root", "wrong", version, "sub", "x", "1");

        var line = JsonDocument.Parse(await client.WaitForAsync("\"error\"", Timeout)).RootElement;
        Assert.Equal(version == "5" ? 0x86 : 4, line.GetProperty("code").GetInt32());
        Assert.Equal(2, await client.ExitAsync(Timeout));
    }

    // Retained messages with MQTT.js on both sides: set, delivered to a later subscriber with the retain flag, then
    // cleared by an empty retained publish, after which a new subscriber's first message is a live one.
    [Theory]
    [MemberData(nameof(MqttJsTransports))]
    public async Task MqttJs_Retained_SetDeliveredOnSubscribe_ThenCleared(string version, string transport)
    {
        var topic = $"mqttjs/retained/{Guid.NewGuid():N}";
        var url = MqttJsUrl(transport);
        var (user, password) = MqttClients.Credentials(RelayServer.Key);

        using (var set = ClientProcess.MqttJs(url, user, password, version, "pub", topic, "0a0b0c", "--retain"))
        {
            Assert.True(await set.ExitAsync(Timeout) == 0, set.Output);
        }

        using (var later = ClientProcess.MqttJs(url, user, password, version, "sub", topic, "1"))
        {
            var retained = JsonDocument.Parse(await later.WaitForAsync("\"message\"", Timeout)).RootElement;
            Assert.Equal("0a0b0c", retained.GetProperty("hex").GetString());
            Assert.True(retained.GetProperty("retain").GetBoolean(), later.Output);
            Assert.True(await later.ExitAsync(Timeout) == 0, later.Output);
        }

        using (var clear = ClientProcess.MqttJs(url, user, password, version, "pub", topic, "-", "--retain"))
        {
            Assert.True(await clear.ExitAsync(Timeout) == 0, clear.Output);
        }

        using var after = ClientProcess.MqttJs(url, user, password, version, "sub", topic, "1");
        await after.WaitForAsync("subscribed", Timeout);
        using (var live = ClientProcess.MqttJs(url, user, password, version, "pub", topic, "ff"))
        {
            Assert.True(await live.ExitAsync(Timeout) == 0, live.Output);
        }

        var first = JsonDocument.Parse(await after.WaitForAsync("\"message\"", Timeout)).RootElement;
        Assert.Equal("ff", first.GetProperty("hex").GetString());
        Assert.False(first.GetProperty("retain").GetBoolean(), after.Output);
        Assert.True(await after.ExitAsync(Timeout) == 0, after.Output);
    }

    // An MQTT.js connection with a will that drops without DISCONNECT: the will reaches an MQTT.js subscriber and a
    // WebSocket subscriber of the same channel, payload exact.
    [Theory]
    [InlineData("4", "tcp")]
    [InlineData("5", "ws")]
    public async Task MqttJs_Will_OnAbruptDrop_ReachesMqttAndWebSocketSubscribers(string version, string transport)
    {
        var topic = $"mqttjs/will/{Guid.NewGuid():N}";
        var url = MqttJsUrl(transport);
        var (user, password) = MqttClients.Credentials(RelayServer.Key);
        using var sub = ClientProcess.MqttJs(url, user, password, version, "sub", topic, "1");
        await sub.WaitForAsync("subscribed", Timeout);
        await using var ws = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        var received = new TaskCompletionSource<RelayMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        await ws.SubscribeAsync(topic, m => received.TrySetResult(m)).WaitAsync(Timeout);

        using var dropping = ClientProcess.MqttJs(url, user, password, version, "will", "unused", $"--will={topic}:7b22676f6e65223a747275657d");
        Assert.True(await dropping.ExitAsync(Timeout) == 0, dropping.Output);

        var will = JsonDocument.Parse(await sub.WaitForAsync("\"message\"", Timeout)).RootElement;
        Assert.Equal("7b22676f6e65223a747275657d", will.GetProperty("hex").GetString());
        var message = await received.Task.WaitAsync(Timeout);
        Assert.Equal("{\"gone\":true}", message.Data.GetRawText());
        Assert.True(await sub.ExitAsync(Timeout) == 0, sub.Output);
    }

    // QoS 2 end to end with MQTT.js publishing and subscribing: each of 50 messages arrives once, at QoS 2, in order.
    [Theory]
    [InlineData("4", "tcp")]
    [InlineData("5", "ws")]
    public async Task MqttJs_QosTwo_EveryMessageOnceInOrder(string version, string transport)
    {
        var topic = $"mqttjs/qos2/{Guid.NewGuid():N}";
        var url = MqttJsUrl(transport);
        var (user, password) = MqttClients.Credentials(RelayServer.Key);
        var payloads = Enumerable.Range(0, 50).Select(i => i.ToString("x4", CultureInfo.InvariantCulture)).ToArray();
        using var sub = ClientProcess.MqttJs(url, user, password, version, "sub", topic, "50", "--qos=2");
        Assert.Contains("[2]", await sub.WaitForAsync("subscribed", Timeout), StringComparison.Ordinal);

        using var pub = ClientProcess.MqttJs([url, user, password, version, "pub", topic, .. payloads, "--qos=2"]);
        Assert.True(await pub.ExitAsync(Timeout) == 0, pub.Output);
        Assert.True(await sub.ExitAsync(Timeout) == 0, sub.Output);

        var messages = sub.Output.Split('\n').Where(l => l.Contains("\"message\"", StringComparison.Ordinal)).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(payloads, messages.Select(m => m.GetProperty("hex").GetString()));
        Assert.All(messages, m => Assert.Equal(2, m.GetProperty("qos").GetInt32()));
    }

    // A persistent MQTT.js session (3.1.1 clean session 0; MQTT 5 session expiry): it subscribes and leaves; three QoS 1
    // messages published over WebSocket meanwhile come when it comes back (session present), in order, without its
    // subscribing again.
    [Theory]
    [MemberData(nameof(MqttJsTransports))]
    public async Task MqttJs_PersistentSession_GetsWhatWasPublishedWhileAway(string version, string transport)
    {
        var topic = $"mqttjs/session/{Guid.NewGuid():N}";
        var clientId = $"mqttjs-{Guid.NewGuid():N}"[..20];
        var url = MqttJsUrl(transport);
        var (user, password) = MqttClients.Credentials(RelayServer.Key);
        string[] session = [$"--id={clientId}", "--clean=false", "--expiry=600"];

        using (var first = ClientProcess.MqttJs([url, user, password, version, "sub", topic, "0", .. session]))
        {
            Assert.Contains("false", await first.WaitForAsync("connected", Timeout), StringComparison.Ordinal);
            Assert.True(await first.ExitAsync(Timeout) == 0, first.Output);
        }

        await using (var ws = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout))
        {
            for (var i = 1; i <= 3; i++)
            {
                await ws.PublishAsync(topic, new { n = i }).WaitAsync(Timeout);
            }
        }

        using var back = ClientProcess.MqttJs([url, user, password, version, "sub", topic, "3", "--nosub", .. session]);
        var connected = JsonDocument.Parse(await back.WaitForAsync("connected", Timeout)).RootElement;
        Assert.True(connected.GetProperty("sessionPresent").GetBoolean(), back.Output);
        Assert.True(await back.ExitAsync(Timeout) == 0, back.Output);
        var messages = back.Output.Split('\n').Where(l => l.Contains("\"message\"", StringComparison.Ordinal)).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(
            [.. Enumerable.Range(1, 3).Select(i => Convert.ToHexStringLower(Encoding.UTF8.GetBytes($"{{\"n\":{i}}}")))],
            messages.Select(m => m.GetProperty("hex").GetString()));
        Assert.All(messages, m => Assert.Equal(1, m.GetProperty("qos").GetInt32()));
    }

    private string MqttJsUrl(string transport) => transport == "ws" ? _server.MqttWebSocketUri.ToString() : $"mqtt://127.0.0.1:{Port}";
}

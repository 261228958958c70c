using System.Buffers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using MQTTnet;
using MQTTnet.Exceptions;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Relay.Client;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// MQTT on a real node, driven by MQTTnet (TCP and WebSocket) and by Relay's WebSocket client: MQTT and WebSocket
/// clients reach each other on the same channels, with the payload bytes exact; auth, capabilities and apps as on the
/// WebSocket; QoS 0 and 1 both ways.
/// </summary>
public abstract class MqttSpec(IServerFixture fixture)
{
    private static readonly TimeSpan Timeout = MqttClients.Timeout;

    private readonly RelayServer _server = fixture.Server;

    public static TheoryData<MqttProtocolVersion, bool> Versions => new()
    {
        { MqttProtocolVersion.V311, false },
        { MqttProtocolVersion.V500, false },
        { MqttProtocolVersion.V311, true },
        { MqttProtocolVersion.V500, true },
    };

    private static string Topic(string prefix) => $"mqtt-{prefix}/{Guid.NewGuid():N}";

    [Theory]
    [MemberData(nameof(Versions))]
    public async Task Publish_QosZeroAndOne_ReachesAnotherMqttSubscriberWithExactBytes(MqttProtocolVersion version, bool webSocket)
    {
        var topic = Topic("pubsub");
        await using var subscriber = await MqttClients.ConnectAsync(_server, version, webSocket: webSocket);
        await using var publisher = await MqttClients.ConnectAsync(_server, version, webSocket: !webSocket);
        var granted = await subscriber.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, granted.Items.Single().ResultCode);

        byte[] binary = [0, 1, 2, 0xFF, 0xFE, 0x80, (byte)'{', 0];
        var ack = await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(binary).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        Assert.True(ack.IsSuccess, $"PUBACK {ack.ReasonCode}");
        await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("{\"t\": 21.5}"u8.ToArray()).Build()).WaitAsync(Timeout);

        var first = await subscriber.NextAsync();
        Assert.Equal(topic, first.Topic);
        Assert.Equal(binary, first.Payload.ToArray());
        Assert.Equal(MqttQualityOfServiceLevel.AtLeastOnce, first.QualityOfServiceLevel);
        var second = await subscriber.NextAsync();

        // A JSON payload is kept as sent, whitespace and all.
        Assert.Equal("{\"t\": 21.5}", Encoding.UTF8.GetString(second.Payload.ToArray()));
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Publish_FromMqtt_ReachesWebSocketSubscriberWithSeqAndHistory(MqttProtocolVersion version)
    {
        var topic = Topic("to-ws");
        await using var ws = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        var received = new System.Threading.Channels.Channel<Relay.Client.RelayMessage>[] { System.Threading.Channels.Channel.CreateUnbounded<Relay.Client.RelayMessage>() }[0];
        await ws.SubscribeAsync(topic, m => received.Writer.TryWrite(m)).WaitAsync(Timeout);
        await using var mqtt = await MqttClients.ConnectAsync(_server, version, clientId: "sensor-7");

        byte[] binary = [0xDE, 0xAD, 0xBE, 0xEF, 0x00];
        await mqtt.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(binary).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        await mqtt.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("{\"on\":true}"u8.ToArray()).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);

        var first = await received.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        Assert.Equal(1, first.Seq);
        Assert.Equal("base64", first.Encoding);
        Assert.Equal(binary, first.GetDataBytes());
        Assert.Equal("sensor-7", first.ClientId);
        var second = await received.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        Assert.Equal(2, second.Seq);
        Assert.Null(second.Encoding);
        Assert.True(second.Data.GetProperty("on").GetBoolean());

        using var http = new HttpClient { BaseAddress = _server.BaseAddress };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        var history = await http.GetFromJsonAsync<JsonElement>($"v1/channels/{Uri.EscapeDataString(topic)}/messages").WaitAsync(Timeout);
        var seqs = history.GetProperty("messages").EnumerateArray().Select(m => m.GetProperty("seq").GetInt64()).ToArray();
        Assert.Equal([1L, 2L], seqs);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Delivery_AtTheLowerOfThePublishAndSubscriptionQos_RetainedToo_WebSocketPublishesAtTheFilters(MqttProtocolVersion version)
    {
        // MQTT §3.8.4: a QoS 2 subscription gets a QoS 0 publish at QoS 0 and a QoS 1 one at QoS 1; a QoS 1 subscription
        // gets a QoS 2 publish at QoS 1. A WebSocket publish (no QoS) goes out at the filter's.
        var topic = Topic("qos");
        await using var two = await MqttClients.ConnectAsync(_server, version);
        await using var one = await MqttClients.ConnectAsync(_server, version);
        await two.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.ExactlyOnce).Build()).WaitAsync(Timeout);
        await one.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        await using var publisher = await MqttClients.ConnectAsync(_server, version);
        MqttQualityOfServiceLevel[] published = [MqttQualityOfServiceLevel.AtMostOnce, MqttQualityOfServiceLevel.AtLeastOnce, MqttQualityOfServiceLevel.ExactlyOnce];
        foreach (var qos in published)
        {
            await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload($"{{\"q\":{(int)qos}}}").WithQualityOfServiceLevel(qos).Build()).WaitAsync(Timeout);
        }

        await using var ws = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        await ws.PublishAsync(topic, new { q = "ws" }).WaitAsync(Timeout);
        var atTwo = new[] { await two.NextAsync(), await two.NextAsync(), await two.NextAsync(), await two.NextAsync() };
        var atOne = new[] { await one.NextAsync(), await one.NextAsync(), await one.NextAsync(), await one.NextAsync() };
        Assert.Equal([.. published, MqttQualityOfServiceLevel.ExactlyOnce], atTwo.Select(m => m.QualityOfServiceLevel));
        Assert.Equal([MqttQualityOfServiceLevel.AtMostOnce, MqttQualityOfServiceLevel.AtLeastOnce, MqttQualityOfServiceLevel.AtLeastOnce, MqttQualityOfServiceLevel.AtLeastOnce], atOne.Select(m => m.QualityOfServiceLevel));
        Assert.Equal("{\"q\":\"ws\"}", Encoding.UTF8.GetString(atTwo[3].Payload.ToArray()));

        // A retained publish keeps its QoS for the subscriptions that come later.
        var retainedTopic = Topic("qos-retained");
        await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(retainedTopic).WithPayload("{}"u8.ToArray()).WithRetainFlag().WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        await using var late = await MqttClients.ConnectAsync(_server, version);
        await late.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(retainedTopic, MqttQualityOfServiceLevel.ExactlyOnce).Build()).WaitAsync(Timeout);
        var retained = await late.NextAsync();
        Assert.True(retained.Retain);
        Assert.Equal(MqttQualityOfServiceLevel.AtLeastOnce, retained.QualityOfServiceLevel);
        await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(retainedTopic).WithPayload([]).WithRetainFlag().Build()).WaitAsync(Timeout);
    }

    [Theory]
    [MemberData(nameof(Versions))]
    public async Task Publish_FromWebSocket_ReachesMqttSubscriberWithPayloadBytesExact(MqttProtocolVersion version, bool webSocket)
    {
        var topic = Topic("from-ws");
        await using var mqtt = await MqttClients.ConnectAsync(_server, version, webSocket: webSocket);
        await mqtt.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic.Split('/')[0] + "/+", MqttQualityOfServiceLevel.AtMostOnce).Build()).WaitAsync(Timeout);
        await using var ws = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);

        await ws.PublishAsync(topic, new { text = "hello", n = 1 }).WaitAsync(Timeout);
        await ws.PublishAsync(topic, new { text = "héllo ✓" }).WaitAsync(Timeout);

        // The payload is the message's data as stored: the JSON the WebSocket client sent, compacted.
        var message = await mqtt.NextAsync();
        Assert.Equal(topic, message.Topic);
        Assert.Equal("{\"text\":\"hello\",\"n\":1}"u8.ToArray(), message.Payload.ToArray());
        Assert.Equal(MqttQualityOfServiceLevel.AtMostOnce, message.QualityOfServiceLevel);
        var unicode = await mqtt.NextAsync();
        Assert.Equal("héllo ✓", JsonDocument.Parse(unicode.Payload.ToArray()).RootElement.GetProperty("text").GetString());
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311, MqttClientConnectResultCode.BadUserNameOrPassword)]
    [InlineData(MqttProtocolVersion.V500, MqttClientConnectResultCode.BadUserNameOrPassword)]
    public async Task Connect_WrongSecret_RefusedWithBadUserNameOrPassword(MqttProtocolVersion version, MqttClientConnectResultCode expected)
    {
        using var client = new MqttClientFactory().CreateMqttClient();
        var options = MqttClients.Options(_server, version, key: "test.root:not-the-secret-0123456789").Build();
        var result = await client.ConnectAsync(options).WaitAsync(Timeout);
        Assert.Equal(expected, result.ResultCode);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311, MqttClientConnectResultCode.NotAuthorized)]
    [InlineData(MqttProtocolVersion.V500, MqttClientConnectResultCode.NotAuthorized)]
    public async Task Connect_NoCredentials_RefusedAsNotAuthorized(MqttProtocolVersion version, MqttClientConnectResultCode expected)
    {
        using var client = new MqttClientFactory().CreateMqttClient();
        var result = await client.ConnectAsync(MqttClients.Options(_server, version, key: null).Build()).WaitAsync(Timeout);
        Assert.Equal(expected, result.ResultCode);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Publish_TopicsWithEmptyLevels_ReachExactAndWildcardSubscribersAsSent(MqttProtocolVersion version)
    {
        // MQTT allows empty levels ("/a", "a//b", "a/"), and '+' matches one: the Paho interoperability suite's "/TopicA".
        var t = Topic("empty");
        string leading = "/" + t, inner = t + "//x/";
        await using var exact = await MqttClients.ConnectAsync(_server, version);
        await using var wild = await MqttClients.ConnectAsync(_server, version);
        await exact.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(leading, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        var granted = await wild.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter("+/" + t, MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter(t + "/+/x/+", MqttQualityOfServiceLevel.AtLeastOnce)
            .Build()).WaitAsync(Timeout);
        Assert.All(granted.Items, i => Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, i.ResultCode));

        // A will topic with an empty level is taken too (it was refused as an invalid channel name).
        var willOptions = MqttClients.Options(_server, version).WithWillTopic(leading + "/will").WithWillPayload("gone"u8.ToArray()).Build();
        using var publisher = new MqttClientFactory().CreateMqttClient();
        Assert.Equal(MqttClientConnectResultCode.Success, (await publisher.ConnectAsync(willOptions).WaitAsync(Timeout)).ResultCode);
        foreach (var topic in new[] { leading, inner })
        {
            var ack = await publisher.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(Encoding.UTF8.GetBytes(topic)).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
            Assert.True(ack.IsSuccess, $"PUBACK {ack.ReasonCode} for '{topic}'");
        }

        var first = await exact.NextAsync();
        Assert.Equal(leading, first.Topic);
        Assert.Equal(leading, Encoding.UTF8.GetString(first.Payload.ToArray()));
        var got = new[] { await wild.NextAsync(), await wild.NextAsync() }.Select(m => (m.Topic, Encoding.UTF8.GetString(m.Payload.ToArray()))).OrderBy(m => m.Topic, StringComparer.Ordinal).ToArray();
        Assert.Equal(new[] { (leading, leading), (inner, inner) }.OrderBy(m => m.Item1, StringComparer.Ordinal).ToArray(), got);
        await publisher.DisconnectAsync().WaitAsync(Timeout);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Publish_DollarTopic_NotMatchedByAFilterStartingWithAWildcard(MqttProtocolVersion version)
    {
        // MQTT 4.7.2: "+/…" and "#" do not match a topic starting with '$'; a filter naming the '$' level does.
        var id = Guid.NewGuid().ToString("N");
        string dollar = "$mqtt-dollar/" + id, plain = "mqtt-dollar/" + id;
        await using var wildcard = await MqttClients.ConnectAsync(_server, version);
        await using var named = await MqttClients.ConnectAsync(_server, version);
        await wildcard.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("+/" + id, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        await named.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("$mqtt-dollar/+", MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        await using var publisher = await MqttClients.ConnectAsync(_server, version);

        await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(dollar).WithPayload("d"u8.ToArray()).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        Assert.Equal(dollar, (await named.NextAsync()).Topic);

        // The '$' message went out before this one; the wildcard subscriber gets only this one.
        await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(plain).WithPayload("p"u8.ToArray()).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        Assert.Equal(plain, (await wildcard.NextAsync()).Topic);
        await Task.Delay(300);
        Assert.False(wildcard.TryNext(out var extra), $"a wildcard first level matched '{extra?.Topic}'");
    }

    [Fact]
    public async Task Connect_TokenAsPassword_ConnectsWithTheTokensClientId()
    {
        var topic = Topic("token");
        var token = TestTokens.ForRootKey("device-42", TimeSpan.FromMinutes(5));
        await using var ws = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        var received = System.Threading.Channels.Channel.CreateUnbounded<Relay.Client.RelayMessage>();
        await ws.SubscribeAsync(topic, m => received.Writer.TryWrite(m)).WaitAsync(Timeout);

        using var client = new MqttClientFactory().CreateMqttClient();
        var options = new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", _server.MqttPort!.Value).WithProtocolVersion(MqttProtocolVersion.V500)
            .WithClientId("any").WithCredentials("token", token).WithTimeout(Timeout).Build();
        await client.ConnectAsync(options).WaitAsync(Timeout);
        await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("1"u8.ToArray()).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);

        var message = await received.Reader.ReadAsync().AsTask().WaitAsync(Timeout);
        Assert.Equal("device-42", message.ClientId);
        await client.DisconnectAsync().WaitAsync(Timeout);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Subscribe_WithoutCapability_GetsTheVersionsFailureCode(MqttProtocolVersion version)
    {
        await using var chat = await MqttClients.ConnectAsync(_server, version, key: RelayServer.ChatOnlyKey);

        var result = await chat.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter("chat:room/1", MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter("news/1", MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter("a/*", MqttQualityOfServiceLevel.AtMostOnce)
            .Build()).WaitAsync(Timeout);

        var codes = result.Items.Select(i => i.ResultCode).ToArray();
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, codes[0]);
        if (version == MqttProtocolVersion.V500)
        {
            Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, codes[1]);
            Assert.Equal(MqttClientSubscribeResultCode.TopicFilterInvalid, codes[2]);
        }
        else
        {
            Assert.Equal(MqttClientSubscribeResultCode.UnspecifiedError, codes[1]);
            Assert.Equal(MqttClientSubscribeResultCode.UnspecifiedError, codes[2]);
        }
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Publish_KeyThatMaySubscribeButNotPublish_RefusedOrDroppedAndNeverDelivered(MqttProtocolVersion version)
    {
        var topic = Topic("readonly");
        await using var reader = await MqttClients.ConnectAsync(_server, version, key: RelayServer.SubscribeOnlyKey);
        var granted = await reader.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, granted.Items.Single().ResultCode);

        var ack = await reader.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("x"u8.ToArray()).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);

        // MQTT 5 refuses with 0x87; MQTT 3.1.1 has no negative PUBACK: acknowledged and dropped.
        Assert.Equal(version == MqttProtocolVersion.V500 ? MqttClientPublishReasonCode.NotAuthorized : MqttClientPublishReasonCode.Success, ack.ReasonCode);

        // Nothing was published: a message from a key that may publish is the first the subscriber sees, with seq 1.
        await using var writer = await MqttClients.ConnectAsync(_server, version);
        await writer.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("ok"u8.ToArray()).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        var first = await reader.NextAsync();
        Assert.Equal("ok", Encoding.UTF8.GetString(first.Payload.ToArray()));
        Assert.True(reader.Client.IsConnected);
    }

    [Fact]
    public async Task Subscribe_OtherAppsChannel_NeverSeesItsMessages()
    {
        var topic = Topic("isolation");
        await using var other = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500, key: RelayServer.OtherAppKey);
        await other.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("#").Build()).WaitAsync(Timeout);
        await using var mine = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await mine.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic).Build()).WaitAsync(Timeout);

        await mine.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("secret"u8.ToArray()).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        await other.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("theirs"u8.ToArray()).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);

        Assert.Equal("secret", Encoding.UTF8.GetString((await mine.NextAsync()).Payload.ToArray()));
        Assert.Equal("theirs", Encoding.UTF8.GetString((await other.NextAsync()).Payload.ToArray()));
        await Task.Delay(200);
        Assert.False(mine.TryNext(out _));
        Assert.False(other.TryNext(out _));
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Connect_SameClientIdTwice_TakesOverTheFirstConnection(MqttProtocolVersion version)
    {
        var clientId = "takeover-" + Guid.NewGuid().ToString("N")[..8];
        await using var first = await MqttClients.ConnectAsync(_server, version, clientId: clientId);
        var disconnected = new TaskCompletionSource<MqttClientDisconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        first.Client.DisconnectedAsync += e =>
        {
            disconnected.TrySetResult(e);
            return Task.CompletedTask;
        };

        await using var second = await MqttClients.ConnectAsync(_server, version, clientId: clientId);

        var reason = await disconnected.Task.WaitAsync(Timeout);
        if (version == MqttProtocolVersion.V500)
        {
            Assert.Equal(MqttClientDisconnectReason.SessionTakenOver, reason.Reason);
        }

        Assert.True(second.Client.IsConnected);
        var ping = second.Client.PingAsync();
        await ping.WaitAsync(Timeout);
    }

    [Fact]
    public async Task Unsubscribe_Filter_StopsDeliveries()
    {
        var topic = Topic("unsub");
        await using var client = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await client.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic).Build()).WaitAsync(Timeout);
        await client.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("1"u8.ToArray()).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        Assert.Equal("1", Encoding.UTF8.GetString((await client.NextAsync()).Payload.ToArray()));

        var result = await client.Client.UnsubscribeAsync(new MqttClientUnsubscribeOptionsBuilder().WithTopicFilter(topic).WithTopicFilter("never/subscribed").Build()).WaitAsync(Timeout);
        Assert.Equal(MqttClientUnsubscribeResultCode.Success, result.Items.First().ResultCode);
        Assert.Equal(MqttClientUnsubscribeResultCode.NoSubscriptionExisted, result.Items.Last().ResultCode);
        await client.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("2"u8.ToArray()).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        await client.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic + "x").WithPayload("3"u8.ToArray()).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        await Task.Delay(200);
        Assert.False(client.TryNext(out _));
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Publish_QosTwo_ExchangeCompletesAndIsDeliveredOnce(MqttProtocolVersion version)
    {
        var topic = Topic("qos2");
        await using var client = await MqttClients.ConnectAsync(_server, version);
        await client.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.ExactlyOnce).Build()).WaitAsync(Timeout);

        var ack = await client.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("once"u8.ToArray()).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.ExactlyOnce).Build()).WaitAsync(Timeout);

        Assert.True(ack.IsSuccess, $"{ack.ReasonCode}");
        var message = await client.NextAsync();
        Assert.Equal(MqttQualityOfServiceLevel.ExactlyOnce, message.QualityOfServiceLevel);
        await Task.Delay(200);
        Assert.False(client.TryNext(out _));
    }

    [Theory]
    [MemberData(nameof(Versions))]
    public async Task Subscribe_QosTwo_GrantedTwo_MoreMessagesThanTheWindowEachArriveOnceInOrder(MqttProtocolVersion version, bool webSocket)
    {
        const int Count = 200;
        var topic = Topic("qos2-out");
        await using var subscriber = await MqttClients.ConnectAsync(_server, version, webSocket: webSocket);
        var granted = await subscriber.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.ExactlyOnce).Build()).WaitAsync(Timeout);
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS2, granted.Items.Single().ResultCode);
        await using var ws = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);

        // More than the in-flight window (32): a slot held past PUBCOMP would stop deliveries there.
        for (var i = 0; i < Count; i++)
        {
            await ws.PublishAsync(topic, i).WaitAsync(Timeout);
        }

        for (var i = 0; i < Count; i++)
        {
            var message = await subscriber.NextAsync();
            Assert.Equal(MqttQualityOfServiceLevel.ExactlyOnce, message.QualityOfServiceLevel);
            Assert.Equal(i.ToString(System.Globalization.CultureInfo.InvariantCulture), Encoding.UTF8.GetString(message.Payload.ToArray()));
        }

        await Task.Delay(300);
        Assert.False(subscriber.TryNext(out _));
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Retained_NewSubscriberGetsTheLastWithRetainFlag_LiveOnesWithout_EmptyPayloadClears(MqttProtocolVersion version)
    {
        var root = Topic("retained");
        await using var publisher = await MqttClients.ConnectAsync(_server, version);
        async Task PublishAsync(string topic, string payload, bool retain)
        {
            var ack = await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(Encoding.UTF8.GetBytes(payload))
                .WithRetainFlag(retain).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
            Assert.True(ack.IsSuccess, $"PUBACK {ack.ReasonCode}");
        }

        static string Seen(MqttApplicationMessage m) => $"{m.Topic.Split('/')[^1]}={Encoding.UTF8.GetString(m.Payload.ToArray())}{(m.Retain ? " (retained)" : string.Empty)}";

        await PublishAsync($"{root}/a", "first", retain: true);
        await PublishAsync($"{root}/a", "kept", retain: true);
        await PublishAsync($"{root}/b", "other", retain: true);
        await PublishAsync($"{root}/c", "not retained", retain: false);

        await using var subscriber = await MqttClients.ConnectAsync(_server, version);
        await subscriber.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter($"{root}/+", MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        var retained = new[] { Seen(await subscriber.NextAsync()), Seen(await subscriber.NextAsync()) };
        Assert.Equal(["a=kept (retained)", "b=other (retained)"], retained.Order(StringComparer.Ordinal));

        // Live messages carry no RETAIN flag, a retained one included; an empty retained publish clears the topic.
        await PublishAsync($"{root}/a", "live", retain: false);
        Assert.Equal("a=live", Seen(await subscriber.NextAsync()));
        await PublishAsync($"{root}/a", string.Empty, retain: true);
        Assert.Equal("a=", Seen(await subscriber.NextAsync()));

        await using var late = await MqttClients.ConnectAsync(_server, version);
        await late.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter($"{root}/#", MqttQualityOfServiceLevel.AtMostOnce).Build()).WaitAsync(Timeout);
        Assert.Equal("b=other (retained)", Seen(await late.NextAsync()));
        await Task.Delay(300);
        Assert.False(late.TryNext(out var extra), extra is null ? null : Seen(extra));

        if (version == MqttProtocolVersion.V500)
        {
            // Retain Handling 2: no retained messages for this subscription.
            await using var none = await MqttClients.ConnectAsync(_server, version);
            var filter = new MqttTopicFilterBuilder().WithTopic($"{root}/#").WithRetainHandling(MqttRetainHandling.DoNotSendOnSubscribe).Build();
            await none.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(filter).Build()).WaitAsync(Timeout);
            await Task.Delay(300);
            Assert.False(none.TryNext(out _));
        }
    }

    [Fact]
    public async Task Will_ConnectionLostWithoutDisconnect_IsPublished()
    {
        var topic = Topic("will");
        await using var watcher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await watcher.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic).Build()).WaitAsync(Timeout);

        // A raw client: CONNECT with a will, then the socket is cut without DISCONNECT.
        using var raw = new System.Net.Sockets.TcpClient();
        await raw.ConnectAsync("127.0.0.1", _server.MqttPort!.Value).WaitAsync(Timeout);
        var (user, password) = MqttClients.Credentials(RelayServer.Key);
        var connect = new Relay.Ingress.Mqtt.Codec.MqttConnect { ProtocolLevel = 4, ClientId = "dying", UserName = user, Password = Encoding.UTF8.GetBytes(password), HasWill = true, WillTopic = topic, WillPayload = "offline"u8.ToArray() };
        var stream = raw.GetStream();
        await stream.WriteAsync(Relay.Ingress.Mqtt.Codec.MqttEncoder.Encode(connect, 4)).AsTask().WaitAsync(Timeout);
        var connAck = new byte[4];
        await stream.ReadExactlyAsync(connAck).AsTask().WaitAsync(Timeout);
        Assert.Equal(new byte[] { 0x20, 0x02, 0x00, 0x00 }, connAck);
        raw.Client.LingerState = new System.Net.Sockets.LingerOption(true, 0);
        raw.Close();

        var will = await watcher.NextAsync();
        Assert.Equal("offline", Encoding.UTF8.GetString(will.Payload.ToArray()));
    }
}

using System.Buffers;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Packets;
using MQTTnet.Protocol;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// MQTT 5 publish properties carried to subscribers (MQTT 5 §3.3.2.3), on every bus: a request/response exchange between
/// MQTTnet clients (Response Topic, Correlation Data, User Properties in order with duplicates, Content Type, Payload
/// Format Indicator), a 3.1.1 subscriber getting the payload alone, retained messages keeping them, and Message Expiry
/// (an expired queued or retained message is not sent; one sent carries the time left).
/// </summary>
public abstract class MqttPropertiesSpec(IServerFixture fixture)
{
    private static readonly TimeSpan Timeout = MqttClients.Timeout;

    private readonly RelayServer _server = fixture.Server;

    /// <summary>Duplicates and order matter (MQTT 5 §3.3.2.3.7).</summary>
    internal static readonly (string Name, string Value)[] UserProperties = [("b", "2"), ("a", "1"), ("b", "3"), ("ünï", "çødé")];

    internal static string Topic(string prefix) => $"mqtt-props-{prefix}/{Guid.NewGuid():N}";

    [Fact]
    public async Task RequestResponse_MqttNetRequesterAndResponder_PropertiesArriveExactly() =>
        await RequestResponseAsync(_server, _server);

    [Fact]
    public async Task LiveDelivery_WithSubscriptionIdentifierAndExpiry_CarriesBothWithTheProperties()
    {
        var topic = Topic("identified");
        await using var subscriber = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await subscriber.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.AtLeastOnce).WithSubscriptionIdentifier(321).Build()).WaitAsync(Timeout);
        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        var result = await publisher.Client.PublishAsync(Request(topic, "x", "replies/i", [5]).WithMessageExpiryInterval(3600).Build()).WaitAsync(Timeout);
        Assert.True(result.IsSuccess, result.ReasonCode.ToString());

        var message = await subscriber.NextAsync(Timeout);
        Assert.Equal([321u], message.SubscriptionIdentifiers);
        Assert.InRange(message.MessageExpiryInterval, 3590u, 3600u);
        Assert.Equal(UserProperties, message.UserProperties?.Select(static p => (p.Name, p.ReadValueAsString())) ?? []);
        Assert.Equal(("replies/i", "application/json"), (message.ResponseTopic, message.ContentType));
    }

    [Fact]
    public async Task Retained_WithProperties_DeliveredWithThemOnSubscribe()
    {
        var topic = Topic("retained");
        await using (var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500))
        {
            var result = await publisher.Client.PublishAsync(Request(topic, "kept", "replies/x", [9, 8, 7], retain: true).Build()).WaitAsync(Timeout);
            Assert.True(result.IsSuccess, result.ReasonCode.ToString());
        }

        await using var subscriber = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await subscriber.Client.SubscribeAsync(topic, MqttQualityOfServiceLevel.AtLeastOnce).WaitAsync(Timeout);
        var retained = await subscriber.NextAsync(Timeout);
        Assert.True(retained.Retain);
        AssertRequest(retained, "kept", "replies/x", [9, 8, 7]);

        // Cleared, so the app's retained topics do not pile up across runs.
        await subscriber.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithRetainFlag().WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
    }

    [Fact]
    public async Task Retained_PastItsExpiry_NotSentOnSubscribe()
    {
        var topic = Topic("retained-expiry");
        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        var result = await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("soon gone").WithRetainFlag()
            .WithMessageExpiryInterval(1).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        Assert.True(result.IsSuccess, result.ReasonCode.ToString());
        await Task.Delay(TimeSpan.FromSeconds(2.5));

        // A live message after the SUBACK comes after any retained one: if the expired one were sent, it would come first.
        await using var subscriber = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await subscriber.Client.SubscribeAsync(topic, MqttQualityOfServiceLevel.AtLeastOnce).WaitAsync(Timeout);
        await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("live").WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        var first = await subscriber.NextAsync(Timeout);
        Assert.Equal("live", Encoding.UTF8.GetString(first.Payload.ToArray()));
        Assert.Null(first.UserProperties);

        await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithRetainFlag().WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
    }

    [Fact]
    public async Task MessageExpiry_QueuedForAnOfflineSession_ExpiredNotSent_OtherSentWithTheTimeLeft()
    {
        var topic = Topic("expiry");
        var clientId = "exp-" + Guid.NewGuid().ToString("N")[..10];
        var options = MqttClients.Options(_server, MqttProtocolVersion.V500, clientId: clientId).WithCleanSession(false).WithSessionExpiryInterval(600).Build();
        await using (var away = new MqttClients.Connected(new MqttClientFactory().CreateMqttClient()))
        {
            await away.Client.ConnectAsync(options).WaitAsync(Timeout);
            await away.Client.SubscribeAsync(topic, MqttQualityOfServiceLevel.AtLeastOnce).WaitAsync(Timeout);
        }

        // Away on the server's side too before anything is published: a delivery started on the old connection is finished
        // on the next one whatever its expiry (MQTT 5 §3.3.2.3.3), so a publish racing the DISCONNECT would be sent.
        var broker = _server.Services.GetRequiredService<Relay.Ingress.Mqtt.MqttBroker>();
        for (var waited = 0; broker.SessionAttached(RelayServer.AppId, clientId) && waited < 200; waited++)
        {
            await Task.Delay(50);
        }

        Assert.False(broker.SessionAttached(RelayServer.AppId, clientId), "the session is still held by the disconnected client");

        await using (var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500))
        {
            foreach (var (payload, seconds) in new[] { ("two", 2u), ("sixty", 60u) })
            {
                var result = await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload)
                    .WithMessageExpiryInterval(seconds).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
                Assert.True(result.IsSuccess, result.ReasonCode.ToString());
            }
        }

        await Task.Delay(TimeSpan.FromSeconds(3));
        await using var back = new MqttClients.Connected(new MqttClientFactory().CreateMqttClient());
        var connected = await back.Client.ConnectAsync(options).WaitAsync(Timeout);
        Assert.True(connected.IsSessionPresent);

        // Queued in publish order: the first to arrive is the 60 s one, so the 2 s one was not sent.
        var kept = await back.NextAsync(Timeout);
        Assert.Equal("sixty", Encoding.UTF8.GetString(kept.Payload.ToArray()));
        Assert.InRange(kept.MessageExpiryInterval, 51u, 60u);
        Assert.False(back.TryNext(out _));
    }

    /// <summary>
    /// A requester (MQTT 5) asks through <paramref name="requesterNode"/>, a responder on <paramref name="responderNode"/>
    /// answers to the Response Topic with the Correlation Data, and a 3.1.1 subscriber to the requests gets the payload.
    /// </summary>
    internal static async Task RequestResponseAsync(RelayServer requesterNode, RelayServer responderNode)
    {
        var requests = Topic("requests");
        var replies = Topic("replies");
        byte[] correlation = [0x00, 0xFF, 0x10, 0x80, 0x7F];
        await using var responder = await MqttClients.ConnectAsync(responderNode, MqttProtocolVersion.V500);
        await using var old = await MqttClients.ConnectAsync(responderNode, MqttProtocolVersion.V311);
        await using var requester = await MqttClients.ConnectAsync(requesterNode, MqttProtocolVersion.V500, webSocket: true);
        await responder.Client.SubscribeAsync(requests, MqttQualityOfServiceLevel.AtLeastOnce).WaitAsync(Timeout);
        await old.Client.SubscribeAsync(requests, MqttQualityOfServiceLevel.AtLeastOnce).WaitAsync(Timeout);
        await requester.Client.SubscribeAsync(replies, MqttQualityOfServiceLevel.AtLeastOnce).WaitAsync(Timeout);

        var asked = await requester.Client.PublishAsync(Request(requests, "{\"q\":1}", replies, correlation).Build()).WaitAsync(Timeout);
        Assert.True(asked.IsSuccess, asked.ReasonCode.ToString());

        var request = await responder.NextAsync(Timeout);
        AssertRequest(request, "{\"q\":1}", replies, correlation);
        var answered = await responder.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(request.ResponseTopic).WithPayload("{\"a\":2}")
            .WithCorrelationData(request.CorrelationData).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        Assert.True(answered.IsSuccess, answered.ReasonCode.ToString());

        var reply = await requester.NextAsync(Timeout);
        Assert.Equal(replies, reply.Topic);
        Assert.Equal("{\"a\":2}", Encoding.UTF8.GetString(reply.Payload.ToArray()));
        Assert.Equal(correlation, reply.CorrelationData);
        Assert.Null(reply.ResponseTopic);
        Assert.Null(reply.UserProperties);

        var plain = await old.NextAsync(Timeout);
        Assert.Equal("{\"q\":1}", Encoding.UTF8.GetString(plain.Payload.ToArray()));
        Assert.Null(plain.UserProperties);
        Assert.Null(plain.CorrelationData);
    }

    internal static MqttApplicationMessageBuilder Request(string topic, string payload, string responseTopic, byte[] correlation, bool retain = false)
    {
        var builder = new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .WithResponseTopic(responseTopic).WithCorrelationData(correlation).WithContentType("application/json")
            .WithPayloadFormatIndicator(MqttPayloadFormatIndicator.CharacterData).WithRetainFlag(retain);
        foreach (var (name, value) in UserProperties)
        {
            builder = builder.WithUserProperty(name, Encoding.UTF8.GetBytes(value).AsMemory());
        }

        return builder;
    }

    internal static void AssertRequest(MqttApplicationMessage message, string payload, string responseTopic, byte[] correlation)
    {
        Assert.Equal(payload, Encoding.UTF8.GetString(message.Payload.ToArray()));
        Assert.Equal(responseTopic, message.ResponseTopic);
        Assert.Equal(correlation, message.CorrelationData);
        Assert.Equal("application/json", message.ContentType);
        Assert.Equal(MqttPayloadFormatIndicator.CharacterData, message.PayloadFormatIndicator);
        Assert.Equal(0u, message.MessageExpiryInterval);
        Assert.Equal(UserProperties, message.UserProperties?.Select(static p => (p.Name, p.ReadValueAsString())) ?? []);
    }
}

public sealed class MqttPropertiesRedisTests(RedisBusServerFixture fixture) : MqttPropertiesSpec(fixture), IClassFixture<RedisBusServerFixture>;

public sealed class MqttPropertiesDaprTests(DaprBusServerFixture fixture) : MqttPropertiesSpec(fixture), IClassFixture<DaprBusServerFixture>;

/// <summary>On the in-memory bus also mosquitto_sub -V mqttv5 (a client nobody on the team wrote) printing the properties.</summary>
public sealed class MqttPropertiesTests(ServerFixture fixture) : MqttPropertiesSpec(fixture), IClassFixture<ServerFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly RelayServer _server = fixture.Server;

    [Fact]
    public async Task MosquittoSubV5_PrintsThePropertiesOfAnMqttNetPublish()
    {
        var topic = Topic("mosq");
        var (user, password) = MqttClients.Credentials(RelayServer.Key);
        var port = _server.MqttPort!.Value.ToString(CultureInfo.InvariantCulture);
        using var sub = ClientProcess.Mosquitto("mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-u", user, "-P", password, "-V", "mqttv5",
            "-t", topic, "-q", "1", "-C", "1", "-W", "20", "-d", "-F", "got|%C|%D|%F|%E|%P|%p");
        await sub.WaitForAsync("SUBACK", Timeout);

        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        var message = Request(topic, "{\"q\":1}", "replies/mosq", "corr-42"u8.ToArray()).WithMessageExpiryInterval(300).Build();
        Assert.True((await publisher.Client.PublishAsync(message).WaitAsync(Timeout)).IsSuccess);

        var line = await sub.WaitForAsync("got|", Timeout);
        var fields = line.Split('|');
        Assert.Equal("application/json", fields[1]);
        Assert.Equal("corr-42", fields[2]);
        Assert.Equal("1", fields[3]);
        Assert.InRange(int.Parse(fields[4], CultureInfo.InvariantCulture), 290, 300);
        Assert.Equal(string.Join(' ', UserProperties.Select(static p => $"{p.Name}:{p.Value}")), fields[5]);
        Assert.Equal("{\"q\":1}", fields[6]);
        Assert.True(await sub.ExitAsync(Timeout) == 0, sub.Output);
    }
}

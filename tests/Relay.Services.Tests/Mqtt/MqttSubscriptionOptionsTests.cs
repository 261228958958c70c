using System.Buffers;
using System.Globalization;
using System.Text;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Packets;
using MQTTnet.Protocol;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// MQTT 5 subscription options on delivery, with MQTTnet, on every bus: No Local keeps a client's own publishes off that
/// subscription, and a delivery carries the Subscription Identifier of every subscription its topic matches, on its one
/// copy.
/// </summary>
public abstract class MqttSubscriptionOptionsSpec(IServerFixture fixture)
{
    private static readonly TimeSpan Timeout = MqttClients.Timeout;

    private readonly RelayServer _server = fixture.Server;

    private static string Topic(string prefix) => $"mqtt-{prefix}/{Guid.NewGuid():N}";

    [Fact]
    public async Task NoLocal_OwnPublishes_NotSentBackButOthersAre()
    {
        var topic = Topic("nolocal");
        await using var self = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500, clientId: "nl-" + Guid.NewGuid().ToString("N")[..8]);
        await using var watcher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await using var other = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await self.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(new MqttTopicFilter { Topic = topic, QualityOfServiceLevel = MqttQualityOfServiceLevel.AtLeastOnce, NoLocal = true }).Build()).WaitAsync(Timeout);
        await watcher.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);

        // Many of its own, at once, then one of another client's: only the other's comes back to it.
        const int Own = 200;
        var publishing = Enumerable.Range(0, Own).Select(i => self.Client.PublishAsync(Message(topic, $"own-{i}"))).ToArray();
        await Task.WhenAll(publishing).WaitAsync(Timeout);
        await other.Client.PublishAsync(Message(topic, "other")).WaitAsync(Timeout);

        var received = await self.NextAsync();
        Assert.Equal("other", Encoding.UTF8.GetString(received.Payload.ToArray()));

        // A subscription without No Local (another client's) gets every one of them.
        for (var i = 0; i < Own; i++)
        {
            Assert.Equal($"own-{i}", Encoding.UTF8.GetString((await watcher.NextAsync()).Payload.ToArray()));
        }

        Assert.Equal("other", Encoding.UTF8.GetString((await watcher.NextAsync()).Payload.ToArray()));
        await Task.Delay(300);
        Assert.False(self.TryNext(out var late), $"got its own '{(late is null ? null : Encoding.UTF8.GetString(late.Payload.ToArray()))}'");
    }

    [Fact]
    public async Task SubscriptionIdentifiers_OverlappingFilters_OneCopyCarriesEveryMatchingIdentifier()
    {
        var root = Topic("subid");
        await using var subscriber = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await subscriber.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter($"{root}/#", MqttQualityOfServiceLevel.AtLeastOnce).WithSubscriptionIdentifier(7).Build()).WaitAsync(Timeout);
        await subscriber.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter($"{root}/a", MqttQualityOfServiceLevel.AtMostOnce).WithSubscriptionIdentifier(300_000).Build()).WaitAsync(Timeout);
        await subscriber.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter($"{root}/+/x", MqttQualityOfServiceLevel.AtMostOnce).Build()).WaitAsync(Timeout);

        await publisher.Client.PublishAsync(Message($"{root}/a", "both")).WaitAsync(Timeout);
        await publisher.Client.PublishAsync(Message($"{root}/b", "one")).WaitAsync(Timeout);
        await publisher.Client.PublishAsync(Message($"{root}/b/x", "unnumbered too")).WaitAsync(Timeout);

        // Three channels: each message is in order on its own, not against the others (on a networked bus they may cross).
        var received = new Dictionary<string, MqttApplicationMessage>();
        for (var i = 0; i < 3; i++)
        {
            var message = await subscriber.NextAsync();
            Assert.True(received.TryAdd(Encoding.UTF8.GetString(message.Payload.ToArray()), message), "a message came twice");
        }

        Assert.Equal([7u, 300_000u], received["both"].SubscriptionIdentifiers.Order());
        Assert.Equal([7u], received["one"].SubscriptionIdentifiers);
        Assert.Equal([7u], received["unnumbered too"].SubscriptionIdentifiers);
        await Task.Delay(300);
        Assert.False(subscriber.TryNext(out _), "a message came twice");
    }

    internal static MqttApplicationMessage Message(string topic, string payload, bool retain = false) =>
        new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).WithRetainFlag(retain).Build();
}

public sealed class MqttSubscriptionOptionsRedisTests(RedisBusServerFixture fixture) : MqttSubscriptionOptionsSpec(fixture), IClassFixture<RedisBusServerFixture>;

/// <summary>
/// On the in-memory bus also Retain As Published (a live message keeps its publish's RETAIN flag where asked; over Redis
/// the node cannot tell, docs/mqtt.md), and mosquitto_sub -V 5 reading the flag and the identifier.
/// </summary>
public sealed class MqttSubscriptionOptionsTests(ServerFixture fixture) : MqttSubscriptionOptionsSpec(fixture), IClassFixture<ServerFixture>
{
    private static readonly TimeSpan Timeout = MqttClients.Timeout;

    private readonly RelayServer _server = fixture.Server;

    private static string Topic(string prefix) => $"mqtt-{prefix}/{Guid.NewGuid():N}";

    [Fact]
    public async Task RetainAsPublished_LiveRetainedPublish_KeepsRetainFlagOnlyWhereAsked()
    {
        var topic = Topic("rap");
        await using var asPublished = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await using var plain = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await asPublished.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(new MqttTopicFilter { Topic = topic, QualityOfServiceLevel = MqttQualityOfServiceLevel.AtLeastOnce, RetainAsPublished = true }).Build()).WaitAsync(Timeout);
        await plain.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);

        await publisher.Client.PublishAsync(Message(topic, "kept", retain: true)).WaitAsync(Timeout);
        await publisher.Client.PublishAsync(Message(topic, "live")).WaitAsync(Timeout);

        var first = await asPublished.NextAsync();
        Assert.Equal(("kept", true), (Encoding.UTF8.GetString(first.Payload.ToArray()), first.Retain));
        var second = await asPublished.NextAsync();
        Assert.Equal(("live", false), (Encoding.UTF8.GetString(second.Payload.ToArray()), second.Retain));
        var plainFirst = await plain.NextAsync();
        Assert.Equal(("kept", false), (Encoding.UTF8.GetString(plainFirst.Payload.ToArray()), plainFirst.Retain));
    }

    [Fact]
    public async Task MosquittoSub_RetainAsPublishedAndIdentifier_PrintsRetainFlagAndIdentifier()
    {
        var topic = Topic("mosq-rap");
        var (user, password) = MqttClients.Credentials(RelayServer.Key);
        var port = _server.MqttPort!.Value.ToString(CultureInfo.InvariantCulture);
        using var sub = ClientProcess.Mosquitto("mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-u", user, "-P", password, "-V", "mqttv5",
            "-t", topic, "-q", "1", "--retain-as-published", "-D", "subscribe", "subscription-identifier", "42", "-C", "2", "-W", "20", "-d", "-F", "got:%r:%S:%p");
        await sub.WaitForAsync("SUBACK", Timeout);

        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V311);
        await publisher.Client.PublishAsync(Message(topic, "r", retain: true)).WaitAsync(Timeout);
        await publisher.Client.PublishAsync(Message(topic, "n")).WaitAsync(Timeout);

        Assert.Equal("got:1:42:r", await sub.WaitForAsync("got:", Timeout));
        Assert.Equal("got:0:42:n", await sub.WaitForAsync("got:", Timeout));
    }
}

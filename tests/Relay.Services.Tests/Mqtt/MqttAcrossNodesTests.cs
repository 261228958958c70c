using System.Buffers;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Relay.Client;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>Two nodes over one Redis: an MQTT publisher on one reaches MQTT and WebSocket subscribers on the other, in order.</summary>
public sealed class MqttAcrossNodesTests(RedisBusFixture redis) : IClassFixture<RedisBusFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Publish_OnOneNode_ReachesMqttAndWebSocketSubscribersOnTheOtherInOrder()
    {
        const int Count = 500;
        var settings = ServerFixture.Settings();
        redis.AddTo(settings);
        settings["Relay:Ingress:PublishRatePerSecond"] = "100000";
        settings["Relay:Ingress:PublishBurst"] = "100000";
        settings["Relay:Namespaces:Defaults:HistorySize"] = "1000";
        await using var a = await RelayServer.StartAsync(settings);
        await using var b = await RelayServer.StartAsync(settings);
        var topic = $"nodes/{Guid.NewGuid():N}";

        await using var subscriber = await MqttClients.ConnectAsync(a, MqttProtocolVersion.V311);
        await subscriber.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("nodes/#", MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        await using var ws = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = a.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        var seqs = new List<long>();
        var all = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await ws.SubscribeAsync(topic, m =>
        {
            lock (seqs)
            {
                seqs.Add(m.Seq);
                if (seqs.Count == Count)
                {
                    all.TrySetResult();
                }
            }
        }).WaitAsync(Timeout);
        await using var publisher = await MqttClients.ConnectAsync(b, MqttProtocolVersion.V500, webSocket: true);

        var publishes = new List<Task<MqttClientPublishResult>>();
        for (var i = 0; i < Count; i++)
        {
            publishes.Add(publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(BitConverter.GetBytes(i)).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()));
        }

        Assert.All(await Task.WhenAll(publishes).WaitAsync(TimeSpan.FromSeconds(60)), static r => Assert.True(r.IsSuccess, r.ReasonCode.ToString()));
        for (var i = 0; i < Count; i++)
        {
            Assert.Equal(i, BitConverter.ToInt32((await subscriber.NextAsync(Timeout)).Payload.ToArray()));
        }

        await all.Task.WaitAsync(Timeout);
        Assert.Equal(Enumerable.Range(1, Count).Select(static i => (long)i), seqs);
    }

    [Fact]
    public async Task Retained_AreSharedByTheNodes_WithOneLimit_AndOutliveThem()
    {
        var settings = ServerFixture.Settings();
        redis.AddTo(settings);
        settings["Relay:Mqtt:MaxRetainedPerApp"] = "2";
        var root = $"retained/{Guid.NewGuid():N}";
        var a = await RelayServer.StartAsync(settings);
        var b = await RelayServer.StartAsync(settings);
        try
        {
            await using var publisherA = await MqttClients.ConnectAsync(a, MqttProtocolVersion.V500);
            await using var publisherB = await MqttClients.ConnectAsync(b, MqttProtocolVersion.V500, webSocket: true);
            Assert.Equal(MqttClientPublishReasonCode.Success, (await RetainAsync(publisherA, "one", "1")).ReasonCode);

            // Set through one node, sent to a subscription made on the other, with RETAIN.
            await using (var subscriberB = await MqttClients.ConnectAsync(b, MqttProtocolVersion.V311))
            {
                await subscriberB.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter($"{root}/#", MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
                var retained = await subscriberB.NextAsync(Timeout);
                Assert.Equal(($"{root}/one", "1", true), (retained.Topic, Text(retained), retained.Retain));
            }

            // One limit for the app, whichever node takes the publish: the third topic is refused on either.
            Assert.Equal(MqttClientPublishReasonCode.Success, (await RetainAsync(publisherB, "two", "2")).ReasonCode);
            Assert.Equal(MqttClientPublishReasonCode.QuotaExceeded, (await RetainAsync(publisherA, "three", "3")).ReasonCode);
            Assert.Equal(MqttClientPublishReasonCode.QuotaExceeded, (await RetainAsync(publisherB, "three", "3")).ReasonCode);

            // A clear through the other node makes room.
            Assert.Equal(MqttClientPublishReasonCode.Success, (await RetainAsync(publisherB, "one", string.Empty)).ReasonCode);
            Assert.Equal(MqttClientPublishReasonCode.Success, (await RetainAsync(publisherA, "three", "3")).ReasonCode);
        }
        finally
        {
            await a.DisposeAsync();
            await b.DisposeAsync();
        }

        // Both nodes gone: a new one has them, the cleared one not.
        await using var c = await RelayServer.StartAsync(settings);
        await using var subscriberC = await MqttClients.ConnectAsync(c, MqttProtocolVersion.V500);
        await subscriberC.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter($"{root}/+", MqttQualityOfServiceLevel.AtMostOnce).Build()).WaitAsync(Timeout);
        var seen = new List<string>();
        for (var i = 0; i < 2; i++)
        {
            var message = await subscriberC.NextAsync(Timeout);
            Assert.True(message.Retain);
            seen.Add($"{message.Topic[(root.Length + 1)..]}={Text(message)}");
        }

        Assert.Equal(["three=3", "two=2"], seen.Order(StringComparer.Ordinal));
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.False(subscriberC.TryNext(out var more), $"nothing else is retained, got {more?.Topic}");

        Task<MqttClientPublishResult> RetainAsync(MqttClients.Connected publisher, string topic, string payload) =>
            publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic($"{root}/{topic}").WithPayload(payload).WithRetainFlag()
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
    }

    [Fact]
    public async Task ClientId_ConnectedOnAnotherNode_TakesOverThere_AndTheSessionLeftThereEnds()
    {
        var settings = ServerFixture.Settings();
        redis.AddTo(settings);
        await using var a = await RelayServer.StartAsync(settings);
        await using var b = await RelayServer.StartAsync(settings);
        var clientId = "roaming-" + Guid.NewGuid().ToString("N")[..8];
        var topic = $"roam/{clientId}";

        // A persistent session on node A with a QoS 1 subscription.
        var onA = new MqttClientFactory().CreateMqttClient();
        var closedOnA = Disconnected(onA);
        await onA.ConnectAsync(MqttClients.Options(a, MqttProtocolVersion.V500, clientId: clientId).WithCleanStart(false).WithSessionExpiryInterval(600).Build()).WaitAsync(Timeout);
        await onA.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);

        // The device comes back through node B: A's connection is taken over (MQTT 5: DISCONNECT 0x8E), B's stays.
        await using var onB = await MqttClients.ConnectAsync(b, MqttProtocolVersion.V500, clientId: clientId);
        Assert.Equal(MqttClientDisconnectReason.SessionTakenOver, (await closedOnA.WaitAsync(Timeout)).Reason);
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.True(onB.Client.IsConnected);
        await onB.Client.PingAsync().WaitAsync(Timeout);

        // A ended the session it kept: a later connection there finds none, and nothing published meanwhile waits in it.
        await using var publisher = await MqttClients.ConnectAsync(b, MqttProtocolVersion.V311);
        await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("while away").WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        var closedOnB = Disconnected(onB.Client);
        await using var backOnA = new MqttClients.Connected(new MqttClientFactory().CreateMqttClient());
        var result = await backOnA.Client.ConnectAsync(MqttClients.Options(a, MqttProtocolVersion.V500, clientId: clientId).WithCleanStart(false).WithSessionExpiryInterval(600).Build()).WaitAsync(Timeout);
        Assert.False(result.IsSessionPresent);
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.False(backOnA.TryNext(out var stale), $"a message queued in the ended session arrived: {stale?.Topic}");

        // And back again to A: now B's connection is the one taken over.
        Assert.Equal(MqttClientDisconnectReason.SessionTakenOver, (await closedOnB.WaitAsync(Timeout)).Reason);
        Assert.True(backOnA.Client.IsConnected);
        onA.Dispose();

        static Task<MqttClientDisconnectedEventArgs> Disconnected(IMqttClient client)
        {
            var disconnected = new TaskCompletionSource<MqttClientDisconnectedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
            client.DisconnectedAsync += e =>
            {
                disconnected.TrySetResult(e);
                return Task.CompletedTask;
            };
            return disconnected.Task;
        }
    }

    private static string Text(MqttApplicationMessage message) => System.Text.Encoding.UTF8.GetString(message.Payload.ToArray());
}

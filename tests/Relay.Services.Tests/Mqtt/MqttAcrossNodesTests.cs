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
}

using System.Buffers;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// A connection whose filters overlap gets each message once, however the node's dispatches of different channels
/// interleave: several channels published at once, thousands of messages a second, each matched by three filters.
/// </summary>
public sealed class MqttOverlapTests(MqttLimitsFixture fixture) : IClassFixture<MqttLimitsFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly RelayServer _server = fixture.Server;

    [Theory]
    [InlineData(MqttQualityOfServiceLevel.AtMostOnce)]
    [InlineData(MqttQualityOfServiceLevel.AtLeastOnce)]
    public async Task OverlappingFilters_ManyChannelsAtRate_EachMessageDeliveredOnce(MqttQualityOfServiceLevel qos)
    {
        const int Channels = 8;
        const int PerChannel = 2500;
        var root = $"overlap/{Guid.NewGuid():N}";
        await using var subscriber = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        var subscribe = new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter($"{root}/#", qos)
            .WithTopicFilter($"{root}/+", qos)
            .WithTopicFilter($"{root}/c0", qos)
            .Build();
        await subscriber.Client.SubscribeAsync(subscribe).WaitAsync(Timeout);

        var publishers = new List<MqttClients.Connected>();
        try
        {
            for (var c = 0; c < Channels; c++)
            {
                publishers.Add(await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V311));
            }

            // Every channel at once, each from its own connection, so the node dispatches them on several threads.
            var publishing = publishers.Select((publisher, c) => Task.Run(async () =>
            {
                for (var i = 0; i < PerChannel; i++)
                {
                    await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic($"{root}/c{c}").WithPayload(BitConverter.GetBytes(i)).Build());
                }
            })).ToArray();
            await Task.WhenAll(publishing).WaitAsync(TimeSpan.FromSeconds(60));

            var copies = new Dictionary<(string Topic, int Index), int>();
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (copies.Count < Channels * PerChannel && DateTime.UtcNow < deadline)
            {
                var message = await subscriber.NextAsync(TimeSpan.FromSeconds(30));
                var key = (message.Topic, BitConverter.ToInt32(message.Payload.ToArray()));
                copies[key] = copies.GetValueOrDefault(key) + 1;
            }

            // Whatever copies were still on their way arrive meanwhile.
            await Task.Delay(500);
            while (subscriber.TryNext(out var late))
            {
                var key = (late!.Topic, BitConverter.ToInt32(late.Payload.ToArray()));
                copies[key] = copies.GetValueOrDefault(key) + 1;
            }

            Assert.Equal(Channels * PerChannel, copies.Count);
            var repeated = copies.Where(c => c.Value > 1).ToList();
            Assert.True(repeated.Count == 0, $"{repeated.Count} messages delivered more than once, e.g. {string.Join(", ", repeated.Take(5).Select(r => $"{r.Key.Topic} #{r.Key.Index} x{r.Value}"))}");
        }
        finally
        {
            foreach (var publisher in publishers)
            {
                await publisher.DisposeAsync();
            }
        }
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task OverlappingFilters_TheOneCopyGoesAtTheHighestMatchingQos_NoHigherThanThePublish(MqttProtocolVersion version)
    {
        // MQTT 5 §3.3.4: one copy, at the maximum QoS of the matching subscriptions (whichever filter reaches the session
        // first); §3.8.4: never above the publish's QoS.
        var prefix = $"overlap-qos/{Guid.NewGuid():N}";
        var topic = prefix + "/x";
        await using var client = await MqttClients.ConnectAsync(_server, version);
        await client.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(topic, MqttQualityOfServiceLevel.AtMostOnce)
            .WithTopicFilter(prefix + "/+", MqttQualityOfServiceLevel.ExactlyOnce)
            .WithTopicFilter(prefix + "/#", MqttQualityOfServiceLevel.AtLeastOnce)
            .Build()).WaitAsync(Timeout);
        await using var publisher = await MqttClients.ConnectAsync(_server, version);
        MqttQualityOfServiceLevel[] published = [.. Enumerable.Repeat(MqttQualityOfServiceLevel.ExactlyOnce, 5), MqttQualityOfServiceLevel.AtLeastOnce, MqttQualityOfServiceLevel.AtMostOnce];
        foreach (var qos in published)
        {
            await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("{}"u8.ToArray()).WithQualityOfServiceLevel(qos).Build()).WaitAsync(Timeout);
        }

        var got = new List<MqttQualityOfServiceLevel>();
        foreach (var _ in published)
        {
            got.Add((await client.NextAsync()).QualityOfServiceLevel);
        }

        Assert.Equal(published, got);
        await Task.Delay(300);
        Assert.False(client.TryNext(out _), "a message came more than once");
    }
}

using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// MQTT 5 publish properties across two nodes over one redis-server: a request/response exchange between nodes, and a
/// retained message set through one node sent with its properties on a subscription made on the other (read back from
/// Redis).
/// </summary>
public sealed class MqttPropertiesAcrossNodesTests(RedisBusFixture redis) : IClassFixture<RedisBusFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task RequestResponse_RequesterAndResponderOnTwoNodes_PropertiesArriveExactly()
    {
        var settings = ServerFixture.Settings();
        redis.AddTo(settings);
        await using var a = await RelayServer.StartAsync(settings);
        await using var b = await RelayServer.StartAsync(settings);

        await MqttPropertiesSpec.RequestResponseAsync(a, b);
        await MqttPropertiesSpec.RequestResponseAsync(b, a);

        var topic = MqttPropertiesSpec.Topic("retained-nodes");
        await using (var publisher = await MqttClients.ConnectAsync(a, MqttProtocolVersion.V500))
        {
            var result = await publisher.Client.PublishAsync(MqttPropertiesSpec.Request(topic, "kept", "replies/r", [1, 2], retain: true).Build()).WaitAsync(Timeout);
            Assert.True(result.IsSuccess, result.ReasonCode.ToString());
        }

        await using var subscriber = await MqttClients.ConnectAsync(b, MqttProtocolVersion.V500);
        await subscriber.Client.SubscribeAsync(topic, MqttQualityOfServiceLevel.AtLeastOnce).WaitAsync(Timeout);
        var retained = await subscriber.NextAsync(Timeout);
        Assert.True(retained.Retain);
        MqttPropertiesSpec.AssertRequest(retained, "kept", "replies/r", [1, 2]);
        await subscriber.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithRetainFlag().WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
    }
}

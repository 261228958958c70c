using System.Buffers;
using System.Net;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Relay.Ingress.Mqtt;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// Connections without credentials (<c>Relay:Mqtt:Anonymous</c>, mosquitto's <c>allow_anonymous</c>): with a key named
/// they connect as that key, held to its capabilities and app; a key that does not exist refuses them; unset, they are
/// refused (<see cref="MqttSpec"/>'s <c>Connect_NoCredentials_RefusedAsNotAuthorized</c>).
/// </summary>
public sealed class MqttAnonymousTests
{
    private static readonly TimeSpan Timeout = MqttClients.Timeout;

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Connect_WithoutCredentials_ConnectsAsTheNamedKeyWithItsCapabilities(MqttProtocolVersion version)
    {
        // test.chat may do anything on chat:* and nothing else.
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Mqtt:Anonymous:Key"] = "test.chat" });
        var channel = $"chat:anon/{Guid.NewGuid():N}";
        await using var anonymous = await MqttClients.ConnectAsync(server, version, key: null);
        await using var root = await MqttClients.ConnectAsync(server, version);

        var granted = await anonymous.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(channel, MqttQualityOfServiceLevel.AtLeastOnce)
            .WithTopicFilter("news/#", MqttQualityOfServiceLevel.AtLeastOnce)
            .Build()).WaitAsync(Timeout);
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, granted.Items.First().ResultCode);
        Assert.Equal(version == MqttProtocolVersion.V500 ? MqttClientSubscribeResultCode.NotAuthorized : MqttClientSubscribeResultCode.UnspecifiedError, granted.Items.Last().ResultCode);
        await root.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter("news/anon", MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);

        // Outside the key's capabilities: refused (MQTT 5) or dropped (3.1.1), never delivered.
        var refused = await anonymous.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("news/anon").WithPayload("no"u8.ToArray()).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        Assert.Equal(version == MqttProtocolVersion.V500 ? MqttClientPublishReasonCode.NotAuthorized : MqttClientPublishReasonCode.Success, refused.ReasonCode);

        var ack = await anonymous.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(channel).WithPayload("{\"n\":1}"u8.ToArray()).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        Assert.True(ack.IsSuccess, $"PUBACK {ack.ReasonCode}");
        var own = await anonymous.NextAsync();
        Assert.Equal(channel, own.Topic);
        Assert.Equal("{\"n\":1}", System.Text.Encoding.UTF8.GetString(own.Payload.ToArray()));

        // The key's app: the anonymous publish is in app "test", where the root key publishes too.
        await root.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(channel).WithPayload("{\"n\":2}"u8.ToArray()).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        Assert.Equal("{\"n\":2}", System.Text.Encoding.UTF8.GetString((await anonymous.NextAsync()).Payload.ToArray()));
        await Task.Delay(200);
        Assert.False(root.TryNext(out var leaked), $"a publish the key may not make was delivered on '{leaked?.Topic}'");
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311, MqttClientConnectResultCode.NotAuthorized)]
    [InlineData(MqttProtocolVersion.V500, MqttClientConnectResultCode.NotAuthorized)]
    public async Task Connect_WithoutCredentials_KeyThatDoesNotExist_Refused(MqttProtocolVersion version, MqttClientConnectResultCode expected)
    {
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Mqtt:Anonymous:Key"] = "test.gone" });
        using var client = new MqttClientFactory().CreateMqttClient();
        var result = await client.ConnectAsync(MqttClients.Options(server, version, key: null).Build()).WaitAsync(Timeout);
        Assert.Equal(expected, result.ResultCode);
        if (version == MqttProtocolVersion.V500)
        {
            Assert.Contains("test.gone", result.ReasonString, StringComparison.Ordinal);
        }

        // Credentials still work beside it.
        await using var keyed = await MqttClients.ConnectAsync(server, version);
        Assert.True(keyed.Client.IsConnected);
    }

    [Theory]
    [InlineData("127.0.0.1", true)]
    [InlineData("127.3.2.1", true)]
    [InlineData("::1", true)]
    [InlineData("::ffff:127.0.0.1", true)]
    [InlineData("10.0.0.7", false)]
    [InlineData("::ffff:192.168.1.2", false)]
    [InlineData("2001:db8::1", false)]
    public void IsLoopback_TellsLoopbackAddressesIncludingIpv4Mapped(string address, bool expected) =>
        Assert.Equal(expected, MqttConnectionHandler.IsLoopback(new IPEndPoint(IPAddress.Parse(address), 1883)));
}

using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// Shared subscriptions (<c>$share/{group}/{filter}</c>) on one node, at thousands of messages a second: each message
/// goes to exactly one member of the group (MQTTnet over MQTT 5 and mosquitto_sub over 3.1.1 alike), a member that
/// leaves stops getting them, and what a member that drops had not acknowledged goes to another member.
/// </summary>
public sealed class MqttSharedSubscriptionTests(MqttLimitsFixture fixture) : IClassFixture<MqttLimitsFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly RelayServer _server = fixture.Server;

    [Fact]
    public async Task SharedSubscription_ThreeMembersAtRate_EachMessageToExactlyOneMember()
    {
        const int Channels = 4;
        const int PerChannel = 1500;
        const int Total = Channels * PerChannel;
        var root = $"share/{Guid.NewGuid():N}";
        var filter = $"$share/workers/{root}/#";
        var (user, password) = MqttClients.Credentials(RelayServer.Key);
        using var mosquitto = ClientProcess.Mosquitto("mosquitto_sub", "-h", "127.0.0.1", "-p", _server.MqttPort!.Value.ToString(CultureInfo.InvariantCulture),
            "-u", user, "-P", password, "-V", "mqttv311", "-t", filter, "-q", "1", "-d", "-F", "got:%t:%p");
        await mosquitto.WaitForAsync("SUBACK", Timeout);
        await using var first = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await using var second = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        foreach (var member in new[] { first, second })
        {
            var granted = await member.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(filter, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
            Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, granted.Items.Single().ResultCode);
        }

        // A subscriber outside the group gets every message, as if the group were not there.
        await using var everything = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await everything.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter($"{root}/#", MqttQualityOfServiceLevel.AtMostOnce).Build()).WaitAsync(Timeout);

        var publishers = new List<MqttClients.Connected>();
        try
        {
            for (var c = 0; c < Channels; c++)
            {
                publishers.Add(await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V311));
            }

            var started = DateTime.UtcNow;
            await Task.WhenAll(publishers.Select((publisher, c) => Task.Run(async () =>
            {
                for (var i = 0; i < PerChannel; i++)
                {
                    await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic($"{root}/c{c}").WithPayload($"{c}-{i}").Build());
                }
            }))).WaitAsync(TimeSpan.FromSeconds(60));

            var copies = new Dictionary<string, int>(StringComparer.Ordinal);
            var perMember = new int[3];
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (perMember.Sum() < Total && DateTime.UtcNow < deadline)
            {
                perMember[0] += Drain(first, copies);
                perMember[1] += Drain(second, copies);
                perMember[2] = MosquittoLines(mosquitto).Count;
                await Task.Delay(50);
            }

            var elapsed = DateTime.UtcNow - started;

            // Whatever extra copy was on its way arrives meanwhile.
            await Task.Delay(500);
            perMember[0] += Drain(first, copies);
            perMember[1] += Drain(second, copies);
            foreach (var line in MosquittoLines(mosquitto))
            {
                var payload = line[(line.LastIndexOf(':') + 1)..];
                copies[payload] = copies.GetValueOrDefault(payload) + 1;
            }

            perMember[2] = MosquittoLines(mosquitto).Count;
            var summary = $"members got {string.Join(", ", perMember)} of {Total} in {elapsed.TotalSeconds:F1} s";
            Assert.True(copies.Count == Total, $"{Total - copies.Count} messages lost; {summary}");
            var repeated = copies.Where(c => c.Value > 1).Select(c => c.Key).Take(5).ToList();
            Assert.True(repeated.Count == 0, $"delivered to more than one member: {string.Join(", ", repeated)}; {summary}");
            Assert.All(perMember, count => Assert.True(count > Total / 6, summary));

            // The subscriber outside the group got every one.
            var all = 0;
            while (all < Total && (everything.TryNext(out _) || await WaitAsync(everything)))
            {
                all++;
            }

            Assert.Equal(Total, all);
        }
        finally
        {
            foreach (var publisher in publishers)
            {
                await publisher.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task SharedSubscription_MemberUnsubscribes_StopsGettingMessagesAndNoneAreLost()
    {
        var topic = $"share-leave/{Guid.NewGuid():N}";
        var filter = $"$share/g/{topic}";
        await using var leaving = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await using var staying = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V311);
        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        foreach (var member in new[] { leaving, staying })
        {
            await member.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(filter, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        }

        const int Half = 1000;
        await PublishAsync(publisher, topic, 0, Half);
        var copies = new Dictionary<string, int>(StringComparer.Ordinal);
        var (left, stayed) = (0, 0);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (left + stayed < Half && DateTime.UtcNow < deadline)
        {
            left += Drain(leaving, copies);
            stayed += Drain(staying, copies);
            await Task.Delay(20);
        }

        Assert.True(left > 0 && stayed > 0, $"one member got all: {left} and {stayed}");
        await leaving.Client.UnsubscribeAsync(filter).WaitAsync(Timeout);
        await PublishAsync(publisher, topic, Half, Half);
        deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (copies.Count < 2 * Half && DateTime.UtcNow < deadline)
        {
            stayed += Drain(staying, copies);
            await Task.Delay(20);
        }

        await Task.Delay(300);
        stayed += Drain(staying, copies);
        Assert.Equal(2 * Half, copies.Count);
        Assert.DoesNotContain(copies, c => c.Value > 1);
        Assert.False(leaving.TryNext(out var late), $"the member that left got '{(late is null ? null : Encoding.UTF8.GetString(late.Payload.ToArray()))}'");
    }

    [Fact]
    public async Task SharedSubscription_MemberDropsWithUnacknowledged_AnotherMemberGetsThem()
    {
        const int Count = 40;
        var topic = $"share-drop/{Guid.NewGuid():N}";
        var filter = $"$share/g/{topic}";
        await using var steady = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await steady.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(filter, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);

        // A member that takes QoS 1 deliveries and never acknowledges them: its window (Relay:Mqtt:MaxInflight) fills, the rest wait.
        var dropping = await RawMqttClient.OpenAsync(_server);
        await dropping.ConnectAsync(4, "share-drop-" + Guid.NewGuid().ToString("N")[..8]);
        await dropping.SendAsync(RawMqttClient.Subscribe(filter));
        var suback = await dropping.ReadPacketAsync();
        Assert.Equal((byte)0x90, suback?.First);
        Assert.Equal(1, suback!.Value.Body[^1]);

        // Published at QoS 1, so the QoS 1 members get them at QoS 1 (the lower of the two).
        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await PublishAsync(publisher, topic, 0, Count, MqttQualityOfServiceLevel.AtLeastOnce);
        var unacknowledged = 0;
        while (unacknowledged < MqttLimitsFixture.MaxInflight && await dropping.ReadPacketAsync() is { First: var first } && (first & 0xF0) == 0x30)
        {
            unacknowledged++;
        }

        Assert.Equal(MqttLimitsFixture.MaxInflight, unacknowledged);
        var copies = new Dictionary<string, int>(StringComparer.Ordinal);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (copies.Count < Count / 2 && DateTime.UtcNow < deadline)
        {
            Drain(steady, copies);
            await Task.Delay(20);
        }

        Assert.Equal(Count / 2, copies.Count);
        await dropping.DisposeAsync();

        deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (copies.Count < Count && DateTime.UtcNow < deadline)
        {
            Drain(steady, copies);
            await Task.Delay(20);
        }

        Assert.Equal(Count, copies.Count);
        Assert.DoesNotContain(copies, c => c.Value > 1);
    }

    [Fact]
    public async Task SharedSubscription_BadGroupOrNoLocal_RefusedAsMqttSays()
    {
        await using var client = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        var result = await client.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter("$share/a+b/x", MqttQualityOfServiceLevel.AtMostOnce)
            .WithTopicFilter("$share//x", MqttQualityOfServiceLevel.AtMostOnce)
            .WithTopicFilter("$share/g", MqttQualityOfServiceLevel.AtMostOnce)
            .WithTopicFilter("$share/g/ok", MqttQualityOfServiceLevel.AtMostOnce).Build()).WaitAsync(Timeout);
        Assert.Equal(
            [MqttClientSubscribeResultCode.TopicFilterInvalid, MqttClientSubscribeResultCode.TopicFilterInvalid, MqttClientSubscribeResultCode.TopicFilterInvalid, MqttClientSubscribeResultCode.GrantedQoS0],
            result.Items.Select(i => i.ResultCode));

        // MQTT 5 §3.8.3.1: No Local on a shared subscription is a protocol error.
        await using var raw = await RawMqttClient.OpenAsync(_server);
        await raw.ConnectAsync(5, "share-nl-" + Guid.NewGuid().ToString("N")[..8]);
        var bytes = Encoding.UTF8.GetBytes("$share/g/x");
        await raw.SendAsync([0x82, (byte)(2 + 1 + 2 + bytes.Length + 1), 0, 1, 0, (byte)(bytes.Length >> 8), (byte)bytes.Length, .. bytes, 0x04]);
        var packets = await raw.ReadUntilClosedAsync();
        Assert.Equal((byte)0xE0, packets.Last().First);
        Assert.Equal((byte)0x82, packets.Last().Body[0]);
    }

    private static async Task PublishAsync(MqttClients.Connected publisher, string topic, int from, int count, MqttQualityOfServiceLevel qos = MqttQualityOfServiceLevel.AtMostOnce)
    {
        for (var i = from; i < from + count; i++)
        {
            await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(i.ToString(CultureInfo.InvariantCulture)).WithQualityOfServiceLevel(qos).Build()).WaitAsync(Timeout);
        }
    }

    private static int Drain(MqttClients.Connected member, Dictionary<string, int> copies)
    {
        var count = 0;
        while (member.TryNext(out var message))
        {
            var payload = Encoding.UTF8.GetString(message!.Payload.ToArray());
            copies[payload] = copies.GetValueOrDefault(payload) + 1;
            count++;
        }

        return count;
    }

    private static List<string> MosquittoLines(ClientProcess process) =>
        process.Output.Split('\n').Where(l => l.StartsWith("got:", StringComparison.Ordinal)).ToList();

    private static async Task<bool> WaitAsync(MqttClients.Connected client)
    {
        try
        {
            await client.NextAsync(TimeSpan.FromSeconds(5));
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    // SUBSCRIBE, packet id 1, one filter at QoS 1 (hand-encoded).
}

using System.Diagnostics;
using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Http;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Relay.Client;
using Relay.Ingress.Mqtt;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>A node with small MQTT limits (1 s CONNECT timeout, 4 in flight, 8 KiB packets), for tests that break them.</summary>
public sealed class MqttLimitsFixture : IServerFixture, IAsyncLifetime
{
    public const int MaxInflight = 4;

    public const int MaxPacketBytes = 8192;

    public const int MaxRetained = 3;

    public RelayServer Server { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var settings = ServerFixture.Settings();
        settings["Relay:Mqtt:ConnectTimeout"] = "00:00:01";
        settings["Relay:Mqtt:MaxInflight"] = MaxInflight.ToString(System.Globalization.CultureInfo.InvariantCulture);
        settings["Relay:Mqtt:MaxPacketBytes"] = MaxPacketBytes.ToString(System.Globalization.CultureInfo.InvariantCulture);
        settings["Relay:Ingress:PublishRatePerSecond"] = "100000";
        settings["Relay:Ingress:PublishBurst"] = "100000";
        settings["Relay:Namespaces:Defaults:HistorySize"] = "10000";
        settings["Relay:Mqtt:MaxRetainedPerApp"] = MaxRetained.ToString(System.Globalization.CultureInfo.InvariantCulture);
        Server = await RelayServer.StartAsync(settings);
    }

    public async Task DisposeAsync() => await Server.DisposeAsync();
}

/// <summary>
/// MQTT's limits and bad input over real sockets: malformed and oversized packets get the disconnect their version
/// prescribes while other connections keep working, silent clients are cut by the CONNECT timeout and keep-alive,
/// QoS 1 deliveries wait for the in-flight window, and thousands of messages at rate arrive in order.
/// </summary>
public sealed class MqttLimitsTests(MqttLimitsFixture fixture) : IClassFixture<MqttLimitsFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly RelayServer _server = fixture.Server;

    [Fact]
    public async Task MalformedPacket_V5_GetsDisconnect0x81WhileOthersKeepWorking()
    {
        var topic = $"bad/{Guid.NewGuid():N}";
        await using var good = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await good.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic).Build()).WaitAsync(Timeout);
        await using var bad = await RawMqttClient.OpenAsync(_server);
        await bad.ConnectAsync(5, "bad-v5");

        await bad.SendHexAsync("36 05 00 01 61 00 01"); // PUBLISH with QoS 3

        var packets = await bad.ReadUntilClosedAsync();
        var disconnect = Assert.Single(packets);
        Assert.Equal(0xE0, disconnect.First);
        Assert.Equal(0x81, disconnect.Body[0]);
        await good.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("still here"u8.ToArray()).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        Assert.Equal("still here", Encoding.UTF8.GetString((await good.NextAsync()).Payload.ToArray()));
    }

    [Fact]
    public async Task MalformedPacket_V311_ClosedWithoutAWord()
    {
        await using var bad = await RawMqttClient.OpenAsync(_server);
        await bad.ConnectAsync(4, "bad-v4");

        await bad.SendHexAsync("82 06 00 01 00 01 61 04"); // SUBSCRIBE with a reserved option bit

        Assert.Empty(await bad.ReadUntilClosedAsync());
    }

    [Fact]
    public async Task OversizedPacket_V5_RefusedWith0x95FromItsHeader()
    {
        await using var bad = await RawMqttClient.OpenAsync(_server);
        await bad.ConnectAsync(5, "big-v5");

        // A PUBLISH announcing 1 MiB, over the 8 KiB limit: refused before its body is sent.
        await bad.SendHexAsync("30 80 80 40");

        var disconnect = Assert.Single(await bad.ReadUntilClosedAsync());
        Assert.Equal(0xE0, disconnect.First);
        Assert.Equal(0x95, disconnect.Body[0]);
    }

    [Fact]
    public async Task Connect_UnsupportedProtocolLevel_GetsConnAck0x01()
    {
        await using var client = await RawMqttClient.OpenAsync(_server);

        await client.SendHexAsync("10 0C 00 04 4D 51 54 54 06 02 00 3C 00 00");

        var connAck = Assert.Single(await client.ReadUntilClosedAsync());
        Assert.Equal(0x20, connAck.First);
        Assert.Equal(new byte[] { 0x00, 0x01 }, connAck.Body);
    }

    [Fact]
    public async Task FirstPacketNotConnect_ClosedWithoutAWord()
    {
        await using var client = await RawMqttClient.OpenAsync(_server);

        await client.SendHexAsync("C0 00");

        Assert.Empty(await client.ReadUntilClosedAsync());
    }

    [Fact]
    public async Task Connect_NeverSent_ClosedAfterTheConnectTimeout()
    {
        await using var client = await RawMqttClient.OpenAsync(_server);
        var watch = Stopwatch.StartNew();

        Assert.Empty(await client.ReadUntilClosedAsync(TimeSpan.FromSeconds(8)));
        Assert.True(watch.Elapsed >= TimeSpan.FromSeconds(0.9), $"closed after {watch.Elapsed}, before the 1 s timeout");
    }

    [Fact]
    public async Task KeepAlive_NoPacketForOneAndAHalfTimes_Disconnected()
    {
        await using var quiet = await RawMqttClient.OpenAsync(_server);
        await quiet.ConnectAsync(4, "quiet", keepAlive: 1);

        // The pinging client's keep-alive is 4 s (cut after 6 s of silence), pinged every 300 ms: twenty times the slack,
        // so a busy machine's stall does not cut it (1 s with pings every 500 ms did, once, in a full CI run; 2 s with
        // pings every 300 ms did too, once, on a CI run beside other test runs).
        await using var pinging = await RawMqttClient.OpenAsync(_server);
        await pinging.ConnectAsync(4, "pinging", keepAlive: 4);
        var watch = Stopwatch.StartNew();

        // The pinging client stays past its own 6 s, each PINGREQ answered; the quiet one is cut meanwhile.
        var closed = quiet.ReadUntilClosedAsync(TimeSpan.FromSeconds(10));
        var cutAt = closed.ContinueWith(_ => watch.Elapsed, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        while ((!closed.IsCompleted || watch.Elapsed < TimeSpan.FromSeconds(7)) && watch.Elapsed < TimeSpan.FromSeconds(10))
        {
            await pinging.SendHexAsync("C0 00");
            var pong = await pinging.ReadPacketAsync();
            Assert.Equal((byte)0xD0, pong?.First);
            await Task.Delay(300);
        }

        Assert.True(closed.IsCompleted, "the quiet client was not cut within 10 s");
        Assert.Empty(await closed);
        Assert.True(await cutAt >= TimeSpan.FromSeconds(1.4), $"cut after {await cutAt}, before 1.5 × the 1 s keep-alive");
        await pinging.SendHexAsync("C0 00");
        Assert.Equal((byte)0xD0, (await pinging.ReadPacketAsync())?.First);
    }

    [Fact]
    public async Task QosOneDelivery_UnacknowledgedWindowFull_WaitsForPubAck()
    {
        var topic = $"inflight/{Guid.NewGuid():N}";
        await using var slow = await RawMqttClient.OpenAsync(_server);
        await slow.ConnectAsync(4, "slow-acker");
        var filter = Encoding.UTF8.GetBytes(topic);
        await slow.SendAsync([0x82, (byte)(5 + filter.Length), 0x00, 0x01, 0x00, (byte)filter.Length, .. filter, 0x01]);
        var subAck = await slow.ReadPacketAsync();
        Assert.Equal(new byte[] { 0x00, 0x01, 0x01 }, subAck?.Body);

        await using var publisher = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        for (var i = 0; i < 10; i++)
        {
            await publisher.PublishAsync(topic, i).WaitAsync(Timeout);
        }

        var ids = new List<int>();
        for (var i = 0; i < MqttLimitsFixture.MaxInflight; i++)
        {
            var publish = await slow.ReadPacketAsync();
            Assert.Equal((byte)0x32, publish?.First);
            ids.Add((publish!.Value.Body[2 + filter.Length] << 8) | publish.Value.Body[3 + filter.Length]);
        }

        Assert.True(await slow.NothingWithinAsync(TimeSpan.FromMilliseconds(500)));

        // One PUBACK frees one slot: exactly one more arrives.
        await slow.SendAsync([0x40, 0x02, (byte)(ids[0] >> 8), (byte)ids[0]]);
        var next = await slow.ReadPacketAsync();
        Assert.Equal((byte)0x32, next?.First);
        Assert.Equal("4", Encoding.UTF8.GetString(next!.Value.Body.AsSpan(4 + filter.Length)));
        Assert.True(await slow.NothingWithinAsync(TimeSpan.FromMilliseconds(500)));
    }

    [Fact]
    public async Task QosTwoDelivery_SlotHeldFromPublishToPubComp_ReleasedOnPubRecAndFreedOnPubComp()
    {
        var topic = $"inflight2/{Guid.NewGuid():N}";
        await using var slow = await RawMqttClient.OpenAsync(_server);
        await slow.ConnectAsync(4, "slow-qos2");
        var filter = Encoding.UTF8.GetBytes(topic);
        await slow.SendAsync([0x82, (byte)(5 + filter.Length), 0x00, 0x01, 0x00, (byte)filter.Length, .. filter, 0x02]);
        Assert.Equal(new byte[] { 0x00, 0x01, 0x02 }, (await slow.ReadPacketAsync())?.Body);

        await using var publisher = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        for (var i = 0; i < 10; i++)
        {
            await publisher.PublishAsync(topic, i).WaitAsync(Timeout);
        }

        var ids = new List<int>();
        for (var i = 0; i < MqttLimitsFixture.MaxInflight; i++)
        {
            var publish = await slow.ReadPacketAsync();
            Assert.Equal((byte)0x34, publish?.First);
            ids.Add((publish!.Value.Body[2 + filter.Length] << 8) | publish.Value.Body[3 + filter.Length]);
        }

        Assert.Equal(MqttLimitsFixture.MaxInflight, ids.Distinct().Count());
        Assert.True(await slow.NothingWithinAsync(TimeSpan.FromMilliseconds(500)));

        // PUBREC: the server releases the message (PUBREL), and the slot stays taken until PUBCOMP.
        await slow.SendAsync([0x50, 0x02, (byte)(ids[0] >> 8), (byte)ids[0]]);
        var release = await slow.ReadPacketAsync();
        Assert.Equal((byte)0x62, release?.First);
        Assert.Equal(new[] { (byte)(ids[0] >> 8), (byte)ids[0] }, release!.Value.Body);
        Assert.True(await slow.NothingWithinAsync(TimeSpan.FromMilliseconds(500)));

        // PUBCOMP ends the exchange: exactly one more QoS 2 PUBLISH.
        await slow.SendAsync([0x70, 0x02, (byte)(ids[0] >> 8), (byte)ids[0]]);
        var next = await slow.ReadPacketAsync();
        Assert.Equal((byte)0x34, next?.First);
        Assert.Equal("4", Encoding.UTF8.GetString(next!.Value.Body.AsSpan(4 + filter.Length)));
        Assert.True(await slow.NothingWithinAsync(TimeSpan.FromMilliseconds(500)));

        // A PUBACK does not end a QoS 2 exchange.
        await slow.SendAsync([0x40, 0x02, (byte)(ids[1] >> 8), (byte)ids[1]]);
        Assert.True(await slow.NothingWithinAsync(TimeSpan.FromMilliseconds(500)));
    }

    [Fact]
    public async Task Retained_AppAtItsMaximumOfTopics_NewTopicRefused0x97_ReplacingOrClearingStillWorks()
    {
        var root = $"retain-limit/{Guid.NewGuid():N}";
        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        async Task<MqttClientPublishReasonCode> RetainAsync(string topic, string payload) =>
            (await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(Encoding.UTF8.GetBytes(payload)).WithRetainFlag()
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout)).ReasonCode;

        for (var i = 0; i < MqttLimitsFixture.MaxRetained; i++)
        {
            Assert.Equal(MqttClientPublishReasonCode.Success, await RetainAsync($"{root}/{i}", "kept"));
        }

        Assert.Equal(MqttClientPublishReasonCode.QuotaExceeded, await RetainAsync($"{root}/over", "refused"));
        Assert.Equal(MqttClientPublishReasonCode.Success, await RetainAsync($"{root}/0", "replaced"));
        Assert.Equal(MqttClientPublishReasonCode.Success, await RetainAsync($"{root}/1", string.Empty));
        Assert.Equal(MqttClientPublishReasonCode.Success, await RetainAsync($"{root}/over", "now kept"));

        await using var subscriber = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V311);
        await subscriber.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter($"{root}/#").Build()).WaitAsync(Timeout);
        var seen = new List<string>();
        for (var i = 0; i < MqttLimitsFixture.MaxRetained; i++)
        {
            var message = await subscriber.NextAsync();
            Assert.True(message.Retain);
            seen.Add($"{message.Topic[(root.Length + 1)..]}={Encoding.UTF8.GetString(message.Payload.ToArray())}");
        }

        Assert.Equal(["0=replaced", "2=kept", "over=now kept"], seen.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task TopicAlias_SetThenUsed_PublishesToTheAliasedTopic_UnsetOrTooHighDisconnects()
    {
        var topic = $"alias/{Guid.NewGuid():N}";
        await using var subscriber = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V311);
        await subscriber.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic).Build()).WaitAsync(Timeout);
        await using var device = await RawMqttClient.OpenAsync(_server);
        await device.SendAsync(RawMqttClient.Connect(5, "alias-device"));
        var connAck = await device.ReadPacketAsync();
        Assert.Equal((byte)0x20, connAck?.First);

        // CONNACK announces a Topic Alias Maximum (property 0x22), above 0.
        var at = Convert.ToHexString(connAck!.Value.Body).IndexOf("22", 6, StringComparison.Ordinal);
        Assert.True(at >= 0 && at % 2 == 0, Convert.ToHexString(connAck.Value.Body));

        static byte[] Publish(string topic, ushort alias, string payload) => RawMqttClient.Publish(topic, qos: 0, payload: payload, level: 5, alias: alias);

        await device.SendAsync(Publish(topic, 1, "set"));
        await device.SendAsync(Publish(string.Empty, 1, "used"));
        Assert.Equal("set", Encoding.UTF8.GetString((await subscriber.NextAsync()).Payload.ToArray()));
        var used = await subscriber.NextAsync();
        Assert.Equal(topic, used.Topic);
        Assert.Equal("used", Encoding.UTF8.GetString(used.Payload.ToArray()));

        // An alias never set: protocol error (0x82); one above the maximum: 0x94.
        await device.SendAsync(Publish(string.Empty, 2, "unset"));
        var closed = await device.ReadUntilClosedAsync();
        Assert.Equal((byte)0x82, Assert.Single(closed, p => p.First == 0xE0).Body[0]);
        await using var greedy = await RawMqttClient.OpenAsync(_server);
        await greedy.ConnectAsync(5, "alias-greedy");
        await greedy.SendAsync(Publish(topic, 1000, "too high"));
        Assert.Equal((byte)0x94, Assert.Single(await greedy.ReadUntilClosedAsync(), p => p.First == 0xE0).Body[0]);

        // Alias 0 is never valid (MQTT 5 §3.3.2.3.4): 0x94 too.
        await using var zero = await RawMqttClient.OpenAsync(_server);
        await zero.ConnectAsync(5, "alias-zero");
        await zero.SendAsync(Publish(topic, 0, "zero"));
        Assert.Equal((byte)0x94, Assert.Single(await zero.ReadUntilClosedAsync(), p => p.First == 0xE0).Body[0]);
        Assert.False(subscriber.TryNext(out _));
    }

    [Fact]
    public async Task TopicAlias_SetWithAnInvalidTopic_Refused0x90AndLeftUnset_NoNameKept()
    {
        // A topic may be 64 KiB; a channel name 255 bytes. An alias set with a name no publish may go to is refused with
        // the publish and is not kept (else each connection could hold its maximum of aliases times 64 KiB).
        var topic = $"alias-big/{Guid.NewGuid():N}";
        await using var subscriber = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V311);
        await subscriber.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic).Build()).WaitAsync(Timeout);
        await using var device = await RawMqttClient.OpenAsync(_server);
        await device.ConnectAsync(5, "alias-big");

        static byte[] Publish(string topic, ushort alias, ushort id, string payload) => RawMqttClient.Publish(topic, qos: 1, id, payload, level: 5, alias: alias);

        // Alias 1 set to a valid topic and used: delivered.
        await device.SendAsync(Publish(topic, 1, 1, "valid"));
        Assert.Equal(0x00, await device.ExpectAckAsync(0x40, 1));
        Assert.Equal("valid", Encoding.UTF8.GetString((await subscriber.NextAsync()).Payload.ToArray()));

        // Set again to a 4,000-byte name (under this server's 8 KiB packet limit): PUBACK 0x90 (Topic Name invalid), nothing published.
        await device.SendAsync(Publish($"{topic}/{new string('x', 4_000)}", 1, 2, "too long"));
        Assert.Equal(0x90, await device.ExpectAckAsync(0x40, 2));

        // The alias is now unset: using it is a protocol error (DISCONNECT 0x82), not a publish to either name.
        await device.SendAsync(Publish(string.Empty, 1, 3, "after"));
        Assert.Equal((byte)0x82, Assert.Single(await device.ReadUntilClosedAsync(), p => p.First == 0xE0).Body[0]);
        Assert.False(subscriber.TryNext(out _));
    }

    [Fact]
    public async Task WindowFull_AcknowledgementsAndPingsStillGoOut_HeldDeliveriesFollowInOrderAsSlotsFree()
    {
        // A client that has not acknowledged its deliveries yet (window of MaxInflight full) still gets PUBACKs for its
        // own publishes and PINGRESP (the Paho suite's flow control test waits for all its PUBACKs before acknowledging
        // anything; a held PINGRESP would end the client's keep-alive).
        var topic = $"window-acks/{Guid.NewGuid():N}";
        const int Published = MqttLimitsFixture.MaxInflight + 3;
        static byte[] Publish(string topic, ushort id) => RawMqttClient.Publish(topic, qos: 1, id, id.ToString(System.Globalization.CultureInfo.InvariantCulture));

        await using var device = await RawMqttClient.OpenAsync(_server);
        await device.ConnectAsync(4, "window-" + Guid.NewGuid().ToString("N")[..8]);
        await device.SendAsync(RawMqttClient.Subscribe(topic, qos: 1));
        Assert.Equal((byte)0x90, (await device.ReadPacketAsync())?.First);
        for (ushort id = 1; id <= Published; id++)
        {
            await device.SendAsync(Publish(topic, id));
        }

        var acks = 0;
        var deliveries = new List<(ushort PacketId, string Payload)>();
        while (acks < Published && await device.ReadPacketAsync() is { } packet)
        {
            if (packet.First == 0x40)
            {
                acks++;
            }
            else if ((packet.First & 0xF0) == 0x30)
            {
                deliveries.Add(Delivery(packet.Body, topic));
            }
        }

        Assert.Equal(Published, acks);
        await device.SendAsync([0xC0, 0]);
        while (await device.ReadPacketAsync() is { } packet && packet.First != 0xD0)
        {
            Assert.Equal(0x30, packet.First & 0xF0);
            deliveries.Add(Delivery(packet.Body, topic));
        }

        // Only the window's worth went out; each PUBACK lets the next held one follow, in publish order.
        Assert.Equal(MqttLimitsFixture.MaxInflight, deliveries.Count);
        for (var i = 0; deliveries.Count < Published; i++)
        {
            await device.SendAsync([0x40, 2, (byte)(deliveries[i].PacketId >> 8), (byte)deliveries[i].PacketId]);
            var next = await device.ReadPacketAsync();
            Assert.Equal(0x30, next!.Value.First & 0xF0);
            deliveries.Add(Delivery(next.Value.Body, topic));
        }

        Assert.Equal(Enumerable.Range(1, Published).Select(n => n.ToString(System.Globalization.CultureInfo.InvariantCulture)), deliveries.Select(d => d.Payload));
        Assert.True(await device.NothingWithinAsync(TimeSpan.FromMilliseconds(300)));

        static (ushort, string) Delivery(byte[] body, string topic)
        {
            var at = 2 + Encoding.UTF8.GetByteCount(topic);
            return ((ushort)((body[at] << 8) | body[at + 1]), Encoding.UTF8.GetString(body, at + 2, body.Length - at - 2));
        }
    }

    [Fact]
    public async Task QosTwoPublishes_MoreThanReceiveMaximumAwaitingPubRel_Disconnected0x93_ReleasedOnesFreeTheirPlace()
    {
        // CONNACK's Receive Maximum (Relay:Mqtt:ReceiveMaximum, 64 by default) bounds the client's QoS 1 and 2 publishes
        // not acknowledged or awaiting PUBREL; one more is MQTT 5's DISCONNECT 0x93 (the Paho suite's flow control test).
        var topic = $"flow/{Guid.NewGuid():N}";
        static byte[] Publish(string topic, ushort id) => RawMqttClient.QosTwoPublish(topic, id);

        await using var device = await RawMqttClient.OpenAsync(_server);
        await device.ConnectAsync(5, "flow-" + Guid.NewGuid().ToString("N")[..8]);

        // 64 taken and PUBREC'd; releasing one (PUBREL → PUBCOMP) frees a place for one more.
        for (ushort id = 1; id <= MqttOptions.DefaultReceiveMaximum; id++)
        {
            await device.SendAsync(Publish(topic, id));
        }

        for (var i = 0; i < MqttOptions.DefaultReceiveMaximum; i++)
        {
            Assert.Equal((byte)0x50, (await device.ReadPacketAsync())?.First);
        }

        await device.SendAsync([0x62, 2, 0, 1]);
        Assert.Equal((byte)0x70, (await device.ReadPacketAsync())?.First);
        await device.SendAsync(Publish(topic, 1000));
        Assert.Equal((byte)0x50, (await device.ReadPacketAsync())?.First);

        await device.SendAsync(Publish(topic, 1001));
        var closed = await device.ReadUntilClosedAsync();
        Assert.Equal((byte)0x93, Assert.Single(closed, p => p.First == 0xE0).Body[0]);

        // MQTT 3.1.1 has no Receive Maximum: the same number and more are taken.
        await using var old = await RawMqttClient.OpenAsync(_server);
        await old.ConnectAsync(4, "flow-v3-" + Guid.NewGuid().ToString("N")[..8]);
        for (ushort id = 1; id <= MqttOptions.DefaultReceiveMaximum + 2; id++)
        {
            await old.SendAsync(Publish(topic, id));
        }

        for (var i = 0; i < MqttOptions.DefaultReceiveMaximum + 2; i++)
        {
            Assert.Equal((byte)0x50, (await old.ReadPacketAsync())?.First);
        }
    }

    [Fact]
    public async Task QosTwoPublish_ResentWhileItsFirstCopyIsRouted_CountsOnceTowardReceiveMaximum_PublishedOnce()
    {
        // A before-publish hook (real Kestrel) holds the first copy in routing until the test lets it go.
        var calls = 0;
        var arrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var letGo = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var hook = await LoopbackServer.StartAsync(async context =>
        {
            if (Interlocked.Increment(ref calls) == 1)
            {
                arrived.TrySetResult();
                await letGo.Task.WaitAsync(context.RequestAborted);
            }

            await context.Response.WriteAsJsonAsync(new { action = "accept" });
        });
        var settings = ServerFixture.Settings();
        settings["Relay:Mqtt:ReceiveMaximum"] = "2";
        settings["Relay:Functions:Namespaces:held:BeforePublish:Target"] = hook.Url.ToString();
        settings["Relay:Functions:Namespaces:held:BeforePublish:Timeout"] = "00:00:30";
        await using var server = await RelayServer.StartAsync(settings);
        var held = $"held:{Guid.NewGuid():N}";
        await using var subscriber = await MqttClients.ConnectAsync(server, MqttProtocolVersion.V500);
        await subscriber.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(held, MqttQualityOfServiceLevel.ExactlyOnce).Build()).WaitAsync(Timeout);

        // Packet id 1 is being routed when the client sends it again with DUP; then packet id 2, elsewhere. The Receive
        // Maximum of 2 holds both: id 1 counts once (not 3 publishes: no DISCONNECT 0x93).
        await using var device = await RawMqttClient.OpenAsync(server);
        await device.ConnectAsync(5, "dup-" + Guid.NewGuid().ToString("N")[..8]);
        await device.SendAsync(RawMqttClient.QosTwoPublish(held, 1));
        await arrived.Task.WaitAsync(Timeout);
        await device.SendAsync(RawMqttClient.QosTwoPublish(held, 1, dup: true));
        await device.SendAsync(RawMqttClient.QosTwoPublish($"free/{Guid.NewGuid():N}", 2));
        var second = await device.ReadPacketAsync();
        Assert.True(second?.First == 0x50, $"expected PUBREC 2, got 0x{second?.First:X2} {Convert.ToHexString(second?.Body ?? [])}");
        Assert.Equal(new byte[] { 0, 2 }, second!.Value.Body.AsSpan(0, 2).ToArray());

        // Let go: a PUBREC for each copy of id 1, the exchange ends once, and the message was published once.
        letGo.SetResult();
        for (var i = 0; i < 2; i++)
        {
            var received = await device.ReadPacketAsync();
            Assert.Equal((byte)0x50, received?.First);
            Assert.Equal(new byte[] { 0, 1 }, received!.Value.Body.AsSpan(0, 2).ToArray());
        }

        await device.SendAsync([0x62, 2, 0, 1]);
        Assert.Equal((byte)0x70, (await device.ReadPacketAsync())?.First);
        Assert.Equal("x", Encoding.UTF8.GetString((await subscriber.NextAsync(Timeout)).Payload));
        Assert.Equal(1, Volatile.Read(ref calls));
        Assert.True(await device.NothingWithinAsync(TimeSpan.FromSeconds(1)), "more came for the client's publishes");
        Assert.False(subscriber.TryNext(out var again), $"the publish went out twice: {again?.Topic}");
    }

    [Fact]
    public async Task ThousandsOfMessagesAtRate_ArriveInOrderOnMqttAndWebSocket()
    {
        const int Count = 5000;
        var topic = $"rate/{Guid.NewGuid():N}";
        await using var subscriber = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await subscriber.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        await using var ws = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        var wsSeqs = new List<long>();
        var wsDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await ws.SubscribeAsync(topic, m =>
        {
            lock (wsSeqs)
            {
                wsSeqs.Add(m.Seq);
                if (wsSeqs.Count == Count)
                {
                    wsDone.TrySetResult();
                }
            }
        }).WaitAsync(Timeout);
        await using var publisher = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V311);

        // QoS 0 and 1 interleaved, published without waiting for each other.
        var publishes = new List<Task<MqttClientPublishResult>>();
        for (var i = 0; i < Count; i++)
        {
            publishes.Add(publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(BitConverter.GetBytes(i))
                .WithQualityOfServiceLevel(i % 2 == 0 ? MqttQualityOfServiceLevel.AtMostOnce : MqttQualityOfServiceLevel.AtLeastOnce).Build()));
        }

        await Task.WhenAll(publishes).WaitAsync(TimeSpan.FromSeconds(60));
        for (var i = 0; i < Count; i++)
        {
            var message = await subscriber.NextAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(i, BitConverter.ToInt32(message.Payload.ToArray()));
        }

        await wsDone.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(Enumerable.Range(1, Count).Select(i => (long)i), wsSeqs);
    }

    [Fact]
    public async Task GarbageFromManyConnections_ServerKeepsServingOthers()
    {
        var topic = $"fuzz/{Guid.NewGuid():N}";
        var random = new Random(1405);
        var raws = new List<Task>();
        for (var c = 0; c < 50; c++)
        {
            var bytes = new byte[random.Next(1, 300)];
            random.NextBytes(bytes);
            if (c % 2 == 0)
            {
                // Half start with a valid CONNECT, so the garbage reaches the connected state.
                bytes = [.. RawMqttClient.Connect((byte)(c % 4 == 0 ? 4 : 5), $"fuzz-{c}"), .. bytes];
            }

            raws.Add(Task.Run(async () =>
            {
                await using var raw = await RawMqttClient.OpenAsync(_server);
                try
                {
                    await raw.SendAsync(bytes);
                }
                catch (IOException)
                {
                    // Closed while sending: fine.
                }

                try
                {
                    // Garbage that reads as the start of a longer packet leaves the server waiting for the rest.
                    await raw.ReadUntilClosedAsync(TimeSpan.FromSeconds(2));
                }
                catch (OperationCanceledException)
                {
                    // Still open: the server waits for the rest of a packet.
                }
            }));
        }

        await Task.WhenAll(raws).WaitAsync(TimeSpan.FromSeconds(30));
        await using var good = await MqttClients.ConnectAsync(_server, MqttProtocolVersion.V500);
        await good.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic).Build()).WaitAsync(Timeout);
        await good.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("ok"u8.ToArray()).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        Assert.Equal("ok", Encoding.UTF8.GetString((await good.NextAsync()).Payload.ToArray()));
    }
}

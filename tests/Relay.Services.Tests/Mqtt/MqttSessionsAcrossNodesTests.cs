using System.Buffers;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Relay.Client;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// Persistent MQTT sessions resumed on another ingress node over one Redis (the session store): subscriptions come back
/// and what was published meanwhile is recovered from history, once each and in order (docs/mqtt.md, "Sessions across
/// nodes").
/// </summary>
public sealed class MqttSessionsAcrossNodesTests(RedisBusFixture redis) : IClassFixture<RedisBusFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task V5Session_ResumedOnAnotherNode_GetsWhatWasMissedOnceInOrder_ThenLive()
    {
        await using var a = await RelayServer.StartAsync(Settings());
        await using var b = await RelayServer.StartAsync(Settings());
        var clientId = "v5-" + Guid.NewGuid().ToString("N")[..8];
        var root = $"resume/{clientId}";
        var named = $"{root}/named";
        var seen = $"{root}/p/seen";
        var fresh = $"{root}/p/fresh";

        // On A: a channel by name (No Local) and a pattern with a subscription identifier, both QoS 1.
        await using var onA = new MqttClients.Connected(new MqttClientFactory().CreateMqttClient());
        Assert.False((await onA.Client.ConnectAsync(Persistent(a, MqttProtocolVersion.V500, clientId).Build()).WaitAsync(Timeout)).IsSessionPresent);
        await onA.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter(f => f.WithTopic(named).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).WithNoLocal()).Build()).WaitAsync(Timeout);
        await onA.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithSubscriptionIdentifier(7)
            .WithTopicFilter($"{root}/p/#", MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);

        await using var ws = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = b.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        await using var publisher = await MqttClients.ConnectAsync(a, MqttProtocolVersion.V500);
        await ws.PublishAsync(named, new { n = 0 }).WaitAsync(Timeout);
        await PublishAsync(publisher, seen, 0);
        var before = new[] { await onA.NextAsync(Timeout), await onA.NextAsync(Timeout) };
        Assert.Equal([named, seen], before.Select(static m => m.Topic).Order(StringComparer.Ordinal));
        await onA.Client.DisconnectAsync().WaitAsync(Timeout);

        // Away: WebSocket publishes to the named channel, MQTT ones to a channel the pattern had delivered and to a new one.
        for (var i = 1; i <= 20; i++)
        {
            await ws.PublishAsync(named, new { n = i }).WaitAsync(Timeout);
            await PublishAsync(publisher, seen, i);
            if (i <= 5)
            {
                await PublishAsync(publisher, fresh, i);
            }
        }

        // Back through B: session present, the missed messages once each and in order per channel, then live ones.
        await using var onB = new MqttClients.Connected(new MqttClientFactory().CreateMqttClient());
        Assert.True((await onB.Client.ConnectAsync(Persistent(b, MqttProtocolVersion.V500, clientId).Build()).WaitAsync(Timeout)).IsSessionPresent);
        var got = await ReceiveAsync(onB, 45);
        Assert.Equal(Enumerable.Range(1, 20), Numbers(got, named));
        Assert.Equal(Enumerable.Range(1, 20), Numbers(got, seen));
        Assert.Equal(Enumerable.Range(1, 5), Numbers(got, fresh));
        Assert.All(got.Where(m => m.Topic != named), static m => Assert.Equal([7], m.SubscriptionIdentifiers));
        Assert.All(got, static m => Assert.Equal(MqttQualityOfServiceLevel.AtLeastOnce, m.QualityOfServiceLevel));

        await ws.PublishAsync(named, new { n = 21 }).WaitAsync(Timeout);
        await PublishAsync(publisher, fresh, 6);
        var live = await ReceiveAsync(onB, 2);
        Assert.Equal([21], Numbers(live, named));
        Assert.Equal([6], Numbers(live, fresh));

        // No Local came along: the client's own publish to the named channel is not sent back to it.
        await onB.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(named).WithPayload("own").WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.False(onB.TryNext(out var extra), $"a message came twice or back to its publisher: {extra?.Topic} {Text(extra)}");
    }

    [Fact]
    public async Task V311CleanSession0_ResumedOnAnotherNode_GetsWhatWasMissedOnceInOrderAtQos2_ThenLive()
    {
        await using var a = await RelayServer.StartAsync(Settings());
        await using var b = await RelayServer.StartAsync(Settings());
        var clientId = "v3-" + Guid.NewGuid().ToString("N")[..8];

        var topic = $"resume/{clientId}";

        await using var onA = await SubscribedAsync(a, MqttProtocolVersion.V311, clientId, topic, qos: MqttQualityOfServiceLevel.ExactlyOnce);
        await onA.Client.DisconnectAsync().WaitAsync(Timeout);

        await using var publisher = await MqttClients.ConnectAsync(b, MqttProtocolVersion.V311);
        // Odd ones at QoS 2, even ones at QoS 1: each comes back at the lower of its publish's QoS and the filter's (2),
        // the publish's QoS carried through the Redis bus and history.
        for (var i = 1; i <= 30; i++)
        {
            await PublishAsync(publisher, topic, i, i % 2 == 1 ? MqttQualityOfServiceLevel.ExactlyOnce : MqttQualityOfServiceLevel.AtLeastOnce);
        }

        await using var onB = new MqttClients.Connected(new MqttClientFactory().CreateMqttClient());
        Assert.True((await onB.Client.ConnectAsync(Persistent(b, MqttProtocolVersion.V311, clientId).Build()).WaitAsync(Timeout)).IsSessionPresent);
        var missed = await ReceiveAsync(onB, 30);
        Assert.Equal(Enumerable.Range(1, 30), Numbers(missed, topic));
        Assert.All(missed, m => Assert.Equal(Numbers([m], topic).Single() % 2 == 1 ? MqttQualityOfServiceLevel.ExactlyOnce : MqttQualityOfServiceLevel.AtLeastOnce, m.QualityOfServiceLevel));
        await PublishAsync(publisher, topic, 31);
        Assert.Equal([31], Numbers(await ReceiveAsync(onB, 1), topic));
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.False(onB.TryNext(out var extra), $"a message came twice: {Text(extra)}");
    }

    [Fact]
    public async Task DelayedWill_SessionResumedOnAnotherNode_IsNotPublished()
    {
        await using var a = await RelayServer.StartAsync(Settings());
        await using var b = await RelayServer.StartAsync(Settings());
        var clientId = "will-" + Guid.NewGuid().ToString("N")[..8];
        var willTopic = $"resume/{clientId}/will";
        await using var watcher = await MqttClients.ConnectAsync(b, MqttProtocolVersion.V500);
        await watcher.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(willTopic).Build()).WaitAsync(Timeout);

        // Gone from A without DISCONNECT: the will waits out its 5 s delay there, and B resumes the session before.
        var device = new MqttClientFactory().CreateMqttClient();
        await device.ConnectAsync(Persistent(a, MqttProtocolVersion.V500, clientId).WithWillTopic(willTopic).WithWillPayload("gone").WithWillDelayInterval(5).Build()).WaitAsync(Timeout);
        device.Dispose();
        await using var onB = new MqttClients.Connected(new MqttClientFactory().CreateMqttClient());
        Assert.True((await onB.Client.ConnectAsync(Persistent(b, MqttProtocolVersion.V500, clientId).Build()).WaitAsync(Timeout)).IsSessionPresent);
        await Task.Delay(TimeSpan.FromSeconds(7));
        Assert.False(watcher.TryNext(out var will), $"the will of a session resumed elsewhere was published: {Text(will)}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DelayedWill_CleanStartOnAnotherNode_PublishedAtOnce_Once(bool stillConnected)
    {
        await using var a = await RelayServer.StartAsync(Settings());
        await using var b = await RelayServer.StartAsync(Settings());
        var clientId = "will-clean-" + Guid.NewGuid().ToString("N")[..8];
        var willTopic = $"resume/{clientId}/will";
        await using var watcher = await MqttClients.ConnectAsync(b, MqttProtocolVersion.V500);
        await watcher.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(willTopic, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);

        // A will delayed ten minutes: within this test only the session's end can publish it (MQTT 5 §3.1.3.2.2).
        var device = new MqttClientFactory().CreateMqttClient();
        await device.ConnectAsync(Persistent(a, MqttProtocolVersion.V500, clientId).WithWillTopic(willTopic).WithWillPayload("gone")
            .WithWillQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).WithWillDelayInterval(600).Build()).WaitAsync(Timeout);
        if (!stillConnected)
        {
            // Gone from A without DISCONNECT: A keeps the session and its will, waiting.
            device.Dispose();
            await AwayAsync(a, clientId);
        }

        // Clean Start 1 on B ends the session A holds (taken over from A's connection, or waiting there): the will goes now.
        await using (var clean = new MqttClients.Connected(new MqttClientFactory().CreateMqttClient()))
        {
            Assert.False((await clean.Client.ConnectAsync(MqttClients.Options(b, MqttProtocolVersion.V500, clientId: clientId).Build()).WaitAsync(Timeout)).IsSessionPresent);
            Assert.Equal("gone", Text(await watcher.NextAsync(Timeout)));
            await Task.Delay(TimeSpan.FromSeconds(2));
            Assert.False(watcher.TryNext(out var twice), $"the will was published twice: {Text(twice)}");
        }

        device.Dispose();
    }

    [Theory]
    [InlineData(4)]
    [InlineData(5)]
    public async Task Qos2AwaitingPubComp_ResumedOnAnotherNode_GetsPubRelAgainNotThePublish(byte level)
    {
        await using var a = await RelayServer.StartAsync(Settings());
        await using var b = await RelayServer.StartAsync(Settings());
        var clientId = $"rel{level}-" + Guid.NewGuid().ToString("N")[..8];
        var topic = $"resume/{clientId}";
        var name = Encoding.UTF8.GetBytes(topic);
        await using var publisher = await MqttClients.ConnectAsync(a, MqttProtocolVersion.V500);

        // On A, a raw client subscribed at QoS 2 takes "one" (PUBREC), is released (PUBREL) and goes before its PUBCOMP.
        ushort packetId;
        await using (var onA = await RawMqttClient.OpenAsync(a))
        {
            await onA.SendAsync(RawMqttClient.Connect(level, clientId, sessionExpiry: 600));
            Assert.Equal((byte)0x20, (await onA.ReadPacketAsync())?.First);
            await onA.SendAsync(level == 5
                ? [0x82, (byte)(6 + name.Length), 0, 1, 0, (byte)(name.Length >> 8), (byte)name.Length, .. name, 2]
                : [0x82, (byte)(5 + name.Length), 0, 1, (byte)(name.Length >> 8), (byte)name.Length, .. name, 2]);
            Assert.Equal((byte)0x90, (await onA.ReadPacketAsync())?.First);
            await PublishTextAsync(publisher, topic, "one");
            var publish = (await onA.ReadPacketAsync())!.Value;
            Assert.Equal(0x34, publish.First & 0xF6);
            packetId = (ushort)((publish.Body[2 + name.Length] << 8) | publish.Body[3 + name.Length]);
            await onA.SendAsync([0x50, 2, (byte)(packetId >> 8), (byte)packetId]);
            var release = (await onA.ReadPacketAsync())!.Value;
            Assert.Equal((byte)0x62, release.First);
            Assert.Equal(packetId, (ushort)((release.Body[0] << 8) | release.Body[1]));
        }

        // On B, Clean Start 0: session present, then PUBREL again for that packet id (MQTT §4.4), not the PUBLISH again,
        // then what is published next.
        await using var onB = await RawMqttClient.OpenAsync(b);
        await onB.SendAsync(RawMqttClient.Connect(level, clientId, sessionExpiry: 600));
        var connAck = (await onB.ReadPacketAsync(Timeout))!.Value;
        Assert.Equal((byte)0x20, connAck.First);
        Assert.Equal(1, connAck.Body[0] & 1);
        await PublishTextAsync(publisher, topic, "two");
        var resent = (await onB.ReadPacketAsync(Timeout))!.Value;
        Assert.True(resent.First == 0x62, $"expected PUBREL {packetId}, got packet 0x{resent.First:X2} {Convert.ToHexString(resent.Body)}");
        Assert.Equal(packetId, (ushort)((resent.Body[0] << 8) | resent.Body[1]));
        await onB.SendAsync([0x70, 2, (byte)(packetId >> 8), (byte)packetId]);
        var next = (await onB.ReadPacketAsync(Timeout))!.Value;
        Assert.Equal(0x34, next.First & 0xF6);
        var payloadAt = 4 + name.Length + (level == 5 ? 1 + next.Body[4 + name.Length] : 0);
        Assert.Equal("two", Encoding.UTF8.GetString(next.Body.AsSpan(payloadAt)));
        Assert.True(await onB.NothingWithinAsync(TimeSpan.FromSeconds(1)), "more came after the next message");
    }

    [Theory]
    [InlineData((byte)4)]
    [InlineData((byte)5)]
    public async Task Qos2PublishAwaitingPubRel_ResentOnAnotherNode_PubRecNotPublishedAgain_PubRelPubComp(byte level)
    {
        await using var a = await RelayServer.StartAsync(Settings());
        await using var b = await RelayServer.StartAsync(Settings());
        var (clientId, topic) = MqttQosTwoInSessionTests.Names(level);
        await using var subscriber = await MqttQosTwoInSessionTests.SubscribedAsync(a, topic);

        // On A: PUBLISH QoS 2 id 7, PUBREC, and the connection drops before PUBREL.
        await using (var onA = await RawMqttClient.OpenAsync(a))
        {
            Assert.False(await onA.ConnectAsync(level, clientId, sessionExpiry: 600, timeout: Timeout));
            await onA.SendAsync(RawMqttClient.QosTwoPublish(topic, 7, payload: "first", level: level));
            Assert.Equal(0, await onA.ExpectAckAsync(0x50, 7, Timeout));
        }

        // On B (the session store carries id 7 awaiting PUBREL): the DUP resend is answered, not published again.
        await using var onB = await RawMqttClient.OpenAsync(b);
        Assert.True(await onB.ConnectAsync(level, clientId, sessionExpiry: 600, timeout: Timeout));
        await MqttQosTwoInSessionTests.ResendAndReleaseAsync(onB, topic, level);
        await MqttQosTwoInSessionTests.MarkAsync(onB, topic, level);
        Assert.Equal(["first", "marker"], await subscriber.PayloadsUntilAsync("marker", Timeout));
    }

    [Fact]
    public async Task MessagesOlderThanHistory_SessionStillPresent_WhatHistoryHoldsThenLive_AndTheLossIsLogged()
    {
        var settings = Settings();
        settings["Relay:Namespaces:Defaults:HistorySize"] = "5";
        var logB = new LogCapture();
        await using var a = await RelayServer.StartAsync(settings);
        await using var b = await RelayServer.StartAsync(settings, s => s.AddSingleton<ILoggerProvider>(logB));
        var clientId = "history-" + Guid.NewGuid().ToString("N")[..8];
        var topic = $"resume/{clientId}";

        await using var onA = await SubscribedAsync(a, MqttProtocolVersion.V500, clientId, topic);
        await onA.Client.DisconnectAsync().WaitAsync(Timeout);
        await using var publisher = await MqttClients.ConnectAsync(b, MqttProtocolVersion.V311);
        for (var i = 1; i <= 20; i++)
        {
            await PublishAsync(publisher, topic, i);
        }

        // History keeps the last 5 of the 20 missed: those 5 come (MQTT has no way to tell the client of the gap, so what
        // history still holds is better than nothing, as a queue that dropped its oldest would give), then live ones.
        await using var onB = new MqttClients.Connected(new MqttClientFactory().CreateMqttClient());
        Assert.True((await onB.Client.ConnectAsync(Persistent(b, MqttProtocolVersion.V500, clientId).Build()).WaitAsync(Timeout)).IsSessionPresent);

        // The warning comes as the subscription goes live (after CONNACK): a publish before that is not the client's.
        for (var i = 0; i < 300 && !logB.Entries.Any(static e => e.EventId.Id == 1432); i++)
        {
            await Task.Delay(100);
        }

        var logged = Assert.Single(logB.Entries, static e => e.EventId.Id == 1432);
        Assert.Contains($"'{topic}' after seq 0 are no longer all in history", logged.Message, StringComparison.Ordinal);
        Assert.Contains("after seq 15", logged.Message, StringComparison.Ordinal);
        await PublishAsync(publisher, topic, 21);
        Assert.Equal([16, 17, 18, 19, 20, 21], Numbers(await ReceiveAsync(onB, 6), topic));
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.False(onB.TryNext(out var extra), $"a message history had lost was sent: {Text(extra)}");
    }

    [Fact]
    public async Task TakeoverOnAnotherNode_UnderLoad_LosesNoAcknowledgedPublish_AndKeepsOrder()
    {
        const int Count = 3000;
        await using var a = await RelayServer.StartAsync(Settings());
        await using var b = await RelayServer.StartAsync(Settings());
        var clientId = "load-" + Guid.NewGuid().ToString("N")[..8];
        var topic = $"resume/{clientId}";

        var onA = await SubscribedAsync(a, MqttProtocolVersion.V500, clientId, topic);

        // About 1,000 QoS 1 publishes a second through B; a third of the way in, the client connects to B (A's connection
        // is taken over, never disconnected by the client).
        await using var publisher = await MqttClients.ConnectAsync(b, MqttProtocolVersion.V500);
        var publishes = new List<Task<MqttClientPublishResult>>(Count);
        await using var onB = new MqttClients.Connected(new MqttClientFactory().CreateMqttClient());
        Task<MqttClientConnectResult>? takeover = null;
        for (var i = 0; i < Count; i++)
        {
            publishes.Add(publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(BitConverter.GetBytes(i))
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()));
            if (i % 10 == 9)
            {
                await Task.Delay(10);
            }

            if (i == Count / 3)
            {
                takeover = onB.Client.ConnectAsync(Persistent(b, MqttProtocolVersion.V500, clientId).Build());
            }
        }

        Assert.All(await Task.WhenAll(publishes).WaitAsync(TimeSpan.FromSeconds(120)), static r => Assert.True(r.IsSuccess, r.ReasonCode.ToString()));
        Assert.True((await takeover!.WaitAsync(Timeout)).IsSessionPresent);

        // B: everything from where A's client stopped acknowledging to the last, in order, once each.
        var onBSeen = new List<int>();
        while (onBSeen.Count == 0 || onBSeen[^1] != Count - 1)
        {
            onBSeen.Add(BitConverter.ToInt32((await onB.NextAsync(Timeout)).Payload.ToArray()));
        }

        var onASeen = new List<int>();
        while (onA.TryNext(out var message))
        {
            onASeen.Add(BitConverter.ToInt32(message!.Payload.ToArray()));
        }

        onA.Client.Dispose();
        Assert.Equal(Enumerable.Range(0, onASeen.Count), onASeen);
        Assert.NotEmpty(onBSeen);
        Assert.InRange(onBSeen[0], 0, onASeen.Count);
        Assert.Equal(Enumerable.Range(onBSeen[0], Count - onBSeen[0]), onBSeen);
    }

    [Fact]
    public async Task Session_PastItsExpiry_IsNotResumedOnAnotherNode()
    {
        await using var a = await RelayServer.StartAsync(Settings());
        await using var b = await RelayServer.StartAsync(Settings());
        var clientId = "expiry-" + Guid.NewGuid().ToString("N")[..8];
        var topic = $"resume/{clientId}";

        await (await SubscribedAsync(a, MqttProtocolVersion.V500, clientId, topic, expiry: 2)).DisposeAsync();

        // Past the 2 s expiry (A ends it within a second of that, and the store's entry expires with it).
        await Task.Delay(TimeSpan.FromSeconds(5));
        await using var publisher = await MqttClients.ConnectAsync(b, MqttProtocolVersion.V311);
        await PublishAsync(publisher, topic, 1);

        await using var onB = new MqttClients.Connected(new MqttClientFactory().CreateMqttClient());
        Assert.False((await onB.Client.ConnectAsync(Persistent(b, MqttProtocolVersion.V500, clientId).Build()).WaitAsync(Timeout)).IsSessionPresent);
        await PublishAsync(publisher, topic, 2);
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.False(onB.TryNext(out var stale), $"the expired session's subscription delivered {Text(stale)}");
    }

    [Fact]
    public async Task CleanStart_OnAnotherNode_DiscardsTheStoredSession()
    {
        await using var a = await RelayServer.StartAsync(Settings());
        await using var b = await RelayServer.StartAsync(Settings());
        var clientId = "clean-" + Guid.NewGuid().ToString("N")[..8];
        var topic = $"resume/{clientId}";

        await (await SubscribedAsync(a, MqttProtocolVersion.V500, clientId, topic)).DisposeAsync();

        await using var publisher = await MqttClients.ConnectAsync(b, MqttProtocolVersion.V311);
        await PublishAsync(publisher, topic, 1);

        // Clean Start 1 (and no expiry) on B: no session, no old subscription, nothing kept for it.
        await using (var clean = new MqttClients.Connected(new MqttClientFactory().CreateMqttClient()))
        {
            Assert.False((await clean.Client.ConnectAsync(MqttClients.Options(b, MqttProtocolVersion.V500, clientId: clientId).Build()).WaitAsync(Timeout)).IsSessionPresent);
            await PublishAsync(publisher, topic, 2);
            await Task.Delay(TimeSpan.FromSeconds(1));
            Assert.False(clean.TryNext(out var stale), $"the discarded session's subscription delivered {Text(stale)}");
        }

        // And it is gone for every node: back on A with Clean Start 0, nothing is resumed.
        await using var backOnA = new MqttClients.Connected(new MqttClientFactory().CreateMqttClient());
        Assert.False((await backOnA.Client.ConnectAsync(Persistent(a, MqttProtocolVersion.V500, clientId).Build()).WaitAsync(Timeout)).IsSessionPresent);
        await PublishAsync(publisher, topic, 3);
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.False(backOnA.TryNext(out var old), $"the discarded session came back: {Text(old)}");
    }

    private Dictionary<string, string?> Settings()
    {
        var settings = ServerFixture.Settings();
        redis.AddTo(settings);
        settings["Relay:Ingress:PublishRatePerSecond"] = "100000";
        settings["Relay:Ingress:PublishBurst"] = "100000";
        settings["Relay:Namespaces:Defaults:HistorySize"] = "10000";
        return settings;
    }

    // A persistent session: 3.1.1 clean session 0; MQTT 5 Clean Start 0 with a session expiry.
    private static MqttClientOptionsBuilder Persistent(RelayServer server, MqttProtocolVersion version, string clientId, uint expiry = 600)
    {
        var options = MqttClients.Options(server, version, clientId: clientId).WithCleanSession(false);
        return version == MqttProtocolVersion.V500 ? options.WithSessionExpiryInterval(expiry) : options;
    }

    // A client with a persistent session on the server, subscribed to the topic (at QoS 1 unless told).
    private static async Task<MqttClients.Connected> SubscribedAsync(RelayServer server, MqttProtocolVersion version, string clientId, string topic, uint expiry = 600, MqttQualityOfServiceLevel qos = MqttQualityOfServiceLevel.AtLeastOnce)
    {
        var connected = new MqttClients.Connected(new MqttClientFactory().CreateMqttClient());
        await connected.Client.ConnectAsync(Persistent(server, version, clientId, expiry).Build()).WaitAsync(Timeout);
        await connected.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, qos).Build()).WaitAsync(Timeout);
        return connected;
    }

    private static Task PublishTextAsync(MqttClients.Connected publisher, string topic, string text) =>
        publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(text)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.ExactlyOnce).Build()).WaitAsync(Timeout);

    // Until the node no longer holds the client's session with a connection (it noticed the client went).
    private static async Task AwayAsync(RelayServer server, string clientId)
    {
        var broker = server.Services.GetRequiredService<Relay.Ingress.Mqtt.MqttBroker>();
        for (var waited = 0; broker.SessionAttached(RelayServer.AppId, clientId) && waited < 300; waited++)
        {
            await Task.Delay(50);
        }

        Assert.False(broker.SessionAttached(RelayServer.AppId, clientId), "the node still holds the session with the client's connection");
    }

    private static Task PublishAsync(MqttClients.Connected publisher, string topic, int n, MqttQualityOfServiceLevel qos = MqttQualityOfServiceLevel.AtLeastOnce) =>
        publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload($"{{\"n\":{n}}}")
            .WithQualityOfServiceLevel(qos).Build()).WaitAsync(Timeout);

    private static async Task<List<MqttApplicationMessage>> ReceiveAsync(MqttClients.Connected client, int count)
    {
        var got = new List<MqttApplicationMessage>(count);
        while (got.Count < count)
        {
            got.Add(await client.NextAsync(Timeout));
        }

        return got;
    }

    // The "n" of each message on one topic, in the order received.
    private static List<int> Numbers(IEnumerable<MqttApplicationMessage> messages, string topic) =>
        [.. messages.Where(m => m.Topic == topic).Select(static m => System.Text.Json.JsonDocument.Parse(m.Payload.ToArray()).RootElement.GetProperty("n").GetInt32())];

    private static string Text(MqttApplicationMessage? message) => message is null ? "nothing" : Encoding.UTF8.GetString(message.Payload.ToArray());
}

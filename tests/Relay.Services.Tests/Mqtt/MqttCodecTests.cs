using System.Buffers;
using System.Text;
using MQTTnet.Adapter;
using MQTTnet.Formatter;
using MQTTnet.Packets;
using MqttPacket = Relay.Ingress.Mqtt.Codec.MqttPacket;
using MQTTnet.Protocol;
using Relay.Ingress.Mqtt.Codec;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// Relay's MQTT codec against MQTTnet's (an encoder and decoder nobody on the team wrote): what MQTTnet's clients send
/// decodes to the same fields, and what Relay sends MQTTnet reads back as written; for MQTT 3.1.1 and 5.
/// </summary>
public sealed class MqttCodecTests
{
    public static TheoryData<byte> Levels => [4, 5];

    [Theory]
    [MemberData(nameof(Levels))]
    public void Decode_MqttNetConnect_ReadsEveryField(byte level)
    {
        var packet = new MqttConnectPacket
        {
            ClientId = "sensor-ü-1",
            CleanSession = true,
            KeepAlivePeriod = 42,
            Username = "test.root",
            Password = Encoding.UTF8.GetBytes("secret"),
            WillFlag = true,
            WillTopic = "devices/1/status",
            WillMessage = [0, 1, 2, 255],
            WillQoS = MqttQualityOfServiceLevel.AtLeastOnce,
            WillRetain = true,
        };
        if (level == 5)
        {
            packet.SessionExpiryInterval = 30;
            packet.ReceiveMaximum = 10;
            packet.MaximumPacketSize = 4096;
            packet.TopicAliasMaximum = 3;
            packet.UserProperties = [new MqttUserProperty("a", "b"u8.ToArray().AsMemory())];
            packet.WillDelayInterval = 7;
            packet.WillContentType = "application/octet-stream";
        }

        var connect = Assert.IsType<MqttConnect>(DecodeOne(Encode(packet, level), 0));
        Assert.Equal(level, connect.ProtocolLevel);
        Assert.Equal("sensor-ü-1", connect.ClientId);
        Assert.True(connect.CleanSession);
        Assert.Equal(42, connect.KeepAliveSeconds);
        Assert.Equal("test.root", connect.UserName);
        Assert.Equal("secret"u8.ToArray(), connect.Password);
        Assert.True(connect.HasWill);
        Assert.Equal("devices/1/status", connect.WillTopic);
        Assert.Equal(new byte[] { 0, 1, 2, 255 }, connect.WillPayload);
        Assert.Equal(1, connect.WillQos);
        Assert.True(connect.WillRetain);
        if (level == 5)
        {
            Assert.Equal(30u, connect.Properties!.SessionExpiryInterval);
            Assert.Equal((ushort)10, connect.Properties.ReceiveMaximum);
            Assert.Equal(4096u, connect.Properties.MaximumPacketSize);
            Assert.Equal((ushort)3, connect.Properties.TopicAliasMaximum);
            Assert.Equal([new KeyValuePair<string, string>("a", "b")], connect.Properties.UserProperties!);
            Assert.Equal(7u, connect.WillProperties!.WillDelayInterval);
            Assert.Equal("application/octet-stream", connect.WillProperties.ContentType);
        }
    }

    [Theory]
    [InlineData(4, 0)]
    [InlineData(4, 1)]
    [InlineData(4, 2)]
    [InlineData(5, 0)]
    [InlineData(5, 1)]
    [InlineData(5, 2)]
    public void Decode_MqttNetPublish_ReadsTopicPayloadAndProperties(byte level, int qos)
    {
        var payload = Enumerable.Range(0, 300).Select(i => (byte)i).ToArray();
        var packet = new MqttPublishPacket
        {
            Topic = "sensors/room-1/temp",
            QualityOfServiceLevel = (MqttQualityOfServiceLevel)qos,
            PacketIdentifier = qos > 0 ? (ushort)513 : (ushort)0,
            Retain = true,
            PayloadSegment = payload,
        };
        if (level == 5)
        {
            packet.ContentType = "text/plain";
            packet.ResponseTopic = "replies/1";
            packet.CorrelationData = [9, 8, 7];
            packet.MessageExpiryInterval = 60;
            packet.PayloadFormatIndicator = MqttPayloadFormatIndicator.CharacterData;
            packet.UserProperties = [new MqttUserProperty("k", "v"u8.ToArray().AsMemory()), new MqttUserProperty("k", "w"u8.ToArray().AsMemory())];
        }

        var publish = Assert.IsType<MqttPublish>(DecodeOne(Encode(packet, level), level));
        Assert.Equal("sensors/room-1/temp", publish.Topic);
        Assert.Equal(qos, publish.Qos);
        Assert.True(publish.Retain);
        Assert.Equal(qos > 0 ? 513 : 0, publish.PacketId);
        Assert.Equal(payload, publish.Payload.ToArray());
        if (level == 5)
        {
            Assert.Equal("text/plain", publish.Properties!.ContentType);
            Assert.Equal("replies/1", publish.Properties.ResponseTopic);
            Assert.Equal(new byte[] { 9, 8, 7 }, publish.Properties.CorrelationData);
            Assert.Equal(60u, publish.Properties.MessageExpiryInterval);
            Assert.Equal((byte)1, publish.Properties.PayloadFormatIndicator);
            Assert.Equal(2, publish.Properties.UserProperties!.Count);
        }
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void Decode_MqttNetSubscribeAndUnsubscribe_ReadsFiltersAndOptions(byte level)
    {
        var subscribe = new MqttSubscribePacket
        {
            PacketIdentifier = 7,
            TopicFilters =
            [
                new MqttTopicFilter { Topic = "a/+/c", QualityOfServiceLevel = MqttQualityOfServiceLevel.AtLeastOnce },
                new MqttTopicFilter { Topic = "b/#", QualityOfServiceLevel = MqttQualityOfServiceLevel.ExactlyOnce, NoLocal = level == 5, RetainAsPublished = level == 5, RetainHandling = level == 5 ? MqttRetainHandling.DoNotSendOnSubscribe : MqttRetainHandling.SendAtSubscribe },
            ],
        };
        if (level == 5)
        {
            subscribe.SubscriptionIdentifier = 99;
        }

        var decoded = Assert.IsType<MqttSubscribe>(DecodeOne(Encode(subscribe, level), level));
        Assert.Equal(7, decoded.PacketId);
        Assert.Equal(["a/+/c", "b/#"], decoded.Subscriptions.Select(s => s.Filter));
        Assert.Equal(1, decoded.Subscriptions[0].Qos);
        Assert.Equal(2, decoded.Subscriptions[1].Qos);
        if (level == 5)
        {
            Assert.True(decoded.Subscriptions[1].NoLocal);
            Assert.True(decoded.Subscriptions[1].RetainAsPublished);
            Assert.Equal(2, decoded.Subscriptions[1].RetainHandling);
            Assert.Equal([99], decoded.Properties!.SubscriptionIdentifiers!);
        }

        var unsubscribe = Assert.IsType<MqttUnsubscribe>(DecodeOne(Encode(new MqttUnsubscribePacket { PacketIdentifier = 8, TopicFilters = ["a/+/c", "x"] }, level), level));
        Assert.Equal(8, unsubscribe.PacketId);
        Assert.Equal(["a/+/c", "x"], unsubscribe.Filters);
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void Decode_MqttNetAcksPingAndDisconnect_ReadsEach(byte level)
    {
        Assert.Equal(MqttPacketType.PubAck, Assert.IsType<MqttAck>(DecodeOne(Encode(new MqttPubAckPacket { PacketIdentifier = 1 }, level), level)).Type);
        Assert.Equal(2, Assert.IsType<MqttAck>(DecodeOne(Encode(new MqttPubRecPacket { PacketIdentifier = 2 }, level), level)).PacketId);
        Assert.Equal(MqttPacketType.PubRel, Assert.IsType<MqttAck>(DecodeOne(Encode(new MqttPubRelPacket { PacketIdentifier = 3 }, level), level)).Type);
        Assert.Equal(MqttPacketType.PubComp, Assert.IsType<MqttAck>(DecodeOne(Encode(new MqttPubCompPacket { PacketIdentifier = 4 }, level), level)).Type);
        Assert.Same(MqttPing.Request, DecodeOne(Encode(MqttPingReqPacket.Instance, level), level));
        var disconnect = Assert.IsType<MqttDisconnect>(DecodeOne(Encode(new MqttDisconnectPacket { ReasonCode = level == 5 ? MqttDisconnectReasonCode.DisconnectWithWillMessage : MqttDisconnectReasonCode.NormalDisconnection }, level), level));
        Assert.Equal(level == 5 ? 0x04 : 0, disconnect.ReasonCode);
        if (level == 5)
        {
            var ack = Assert.IsType<MqttAck>(DecodeOne(Encode(new MqttPubAckPacket { PacketIdentifier = 5, ReasonCode = MqttPubAckReasonCode.NotAuthorized, ReasonString = "no" }, level), level));
            Assert.Equal(MqttReasonCodes.NotAuthorized, ack.ReasonCode);
            Assert.Equal("no", ack.Properties!.ReasonString);
            var auth = Assert.IsType<MqttDisconnect>(DecodeOne(Encode(new MqttAuthPacket { ReasonCode = MqttAuthenticateReasonCode.ContinueAuthentication, AuthenticationMethod = "SCRAM", AuthenticationData = [1] }, level), level));
            Assert.Equal(MqttPacketType.Auth, auth.Type);
            Assert.Equal("SCRAM", auth.Properties!.AuthenticationMethod);
        }
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void Encode_ServerPackets_MqttNetReadsThemBack(byte level)
    {
        var v5 = level == 5;
        var connAck = Assert.IsType<MqttConnAckPacket>(MqttNetDecode(MqttEncoder.Encode(new MqttConnAck
        {
            SessionPresent = false,
            ReasonCode = v5 ? MqttReasonCodes.BadUserNameOrPassword : MqttReasonCodes.V3BadUserNameOrPassword,
            Properties = v5 ? new MqttProperties { AssignedClientIdentifier = "auto-1", ServerKeepAlive = 60, ReceiveMaximum = 100, MaximumQos = 1, RetainAvailable = 0, TopicAliasMaximum = 0, MaximumPacketSize = 1000, ReasonString = "bad" } : null,
        }, level), level));
        if (v5)
        {
            Assert.Equal(MqttConnectReasonCode.BadUserNameOrPassword, connAck.ReasonCode);
            Assert.Equal("auto-1", connAck.AssignedClientIdentifier);
            Assert.Equal(60, connAck.ServerKeepAlive);
            Assert.Equal(100, connAck.ReceiveMaximum);
            Assert.Equal(MqttQualityOfServiceLevel.AtLeastOnce, connAck.MaximumQoS);
            Assert.False(connAck.RetainAvailable);
            Assert.Equal(1000u, connAck.MaximumPacketSize);
            Assert.Equal("bad", connAck.ReasonString);
        }
        else
        {
            Assert.Equal(MqttConnectReturnCode.ConnectionRefusedBadUsernameOrPassword, connAck.ReturnCode);
        }

        var subAck = Assert.IsType<MqttSubAckPacket>(MqttNetDecode(MqttEncoder.Encode(new MqttSubAck { PacketId = 9, ReasonCodes = { 0, 1, v5 ? MqttReasonCodes.NotAuthorized : MqttReasonCodes.V3SubscribeFailure } }, level), level));
        Assert.Equal(9, subAck.PacketIdentifier);
        Assert.Equal(v5 ? MqttSubscribeReasonCode.NotAuthorized : MqttSubscribeReasonCode.UnspecifiedError, subAck.ReasonCodes[2]);
        Assert.Equal(MqttSubscribeReasonCode.GrantedQoS1, subAck.ReasonCodes[1]);

        var unsubAck = Assert.IsType<MqttUnsubAckPacket>(MqttNetDecode(MqttEncoder.Encode(new MqttSubAck(MqttPacketType.UnsubAck) { PacketId = 10, ReasonCodes = { 0 } }, level), level));
        Assert.Equal(10, unsubAck.PacketIdentifier);

        var pubAck = Assert.IsType<MqttPubAckPacket>(MqttNetDecode(MqttEncoder.Encode(new MqttAck(MqttPacketType.PubAck) { PacketId = 11, ReasonCode = v5 ? MqttReasonCodes.NotAuthorized : (byte)0 }, level), level));
        Assert.Equal(11, pubAck.PacketIdentifier);
        Assert.Equal(v5 ? MqttPubAckReasonCode.NotAuthorized : MqttPubAckReasonCode.Success, pubAck.ReasonCode);
        Assert.IsType<MqttPubRecPacket>(MqttNetDecode(MqttEncoder.Encode(new MqttAck(MqttPacketType.PubRec) { PacketId = 12 }, level), level));
        Assert.IsType<MqttPubCompPacket>(MqttNetDecode(MqttEncoder.Encode(new MqttAck(MqttPacketType.PubComp) { PacketId = 13 }, level), level));
        Assert.IsType<MqttPingRespPacket>(MqttNetDecode(MqttEncoder.Encode(MqttPing.Response, level), level));
        if (v5)
        {
            var disconnect = Assert.IsType<MqttDisconnectPacket>(MqttNetDecode(MqttEncoder.Encode(new MqttDisconnect { ReasonCode = MqttReasonCodes.SessionTakenOver, Properties = new MqttProperties { ReasonString = "another connection took client id x" } }, level), level));
            Assert.Equal(MqttDisconnectReasonCode.SessionTakenOver, disconnect.ReasonCode);
            Assert.Equal("another connection took client id x", disconnect.ReasonString);
        }
    }

    [Theory]
    [InlineData(4, 0)]
    [InlineData(4, 1)]
    [InlineData(5, 0)]
    [InlineData(5, 1)]
    public void PublishFrame_EncodedOnce_MqttNetReadsTopicPayloadAndPacketId(byte level, byte qos)
    {
        var payload = Enumerable.Range(0, 70_000).Select(i => (byte)(i * 7)).ToArray();
        var message = new Relay.Core.Messages.RelayMessage { App = "a", Channel = "sensors/ü/1", Epoch = "e", Seq = 1, Data = payload, DataIsJson = false };
        var frames = MqttPublishFrame.Of(message);
        var frame = frames.Get(message, level, qos);
        Assert.Same(frame, MqttPublishFrame.Of(message).Get(message, level, qos));
        var copy = frame.ToArray();
        if (qos == 1)
        {
            var at = MqttPublishFrame.PacketIdOffset(copy);
            copy[at] = 0x12;
            copy[at + 1] = 0x34;
        }

        var publish = Assert.IsType<MqttPublishPacket>(MqttNetDecode(copy, level));
        Assert.Equal("sensors/ü/1", publish.Topic);
        Assert.Equal(payload, publish.Payload.ToArray());
        Assert.Equal((MqttQualityOfServiceLevel)qos, publish.QualityOfServiceLevel);
        Assert.Equal(qos == 1 ? 0x1234 : 0, publish.PacketIdentifier);
    }

    [Theory]
    [InlineData(0, false)]
    [InlineData(1, false)]
    [InlineData(1, true)]
    public void PublishFrame_WithProperties_MqttNetReadsThemWithIdentifiersAndTheTimeLeft(byte qos, bool identified)
    {
        var properties = new Relay.Core.Messages.MessageProperties
        {
            PayloadFormatIndicator = 1,
            ExpiresAt = 1_000_000,
            ContentType = "text/plain",
            ResponseTopic = "replies/1",
            CorrelationData = [0, 1, 255],
            UserProperties = [new("k", "1"), new("k", "2")],
        };
        var message = new Relay.Core.Messages.RelayMessage { App = "a", Channel = "t/1", Epoch = "e", Seq = 1, Data = "hello"u8.ToArray(), DataIsJson = false, Properties = properties };
        var frames = MqttPublishFrame.Of(message);
        var frame = frames.Get(message, 5, qos);
        List<int> identifiers = [7, 300_000];
        var copy = identified ? new byte[frames.LengthFor(frame, identifiers, 0, false, qos > 0)] : frame.ToArray();
        if (identified)
        {
            frames.CopyFor(frame, identifiers, 0, false, qos > 0, copy);
        }

        MqttPublishFrame.WriteTimeLeft(copy, qos > 0, 42);
        var publish = Assert.IsType<MqttPublishPacket>(MqttNetDecode(copy, 5));
        Assert.Equal(("t/1", "hello"), (publish.Topic, Encoding.UTF8.GetString(publish.Payload.ToArray())));
        Assert.Equal((42u, "text/plain", "replies/1"), (publish.MessageExpiryInterval, publish.ContentType, publish.ResponseTopic));
        Assert.Equal(MqttPayloadFormatIndicator.CharacterData, publish.PayloadFormatIndicator);
        Assert.Equal(new byte[] { 0, 1, 255 }, publish.CorrelationData);
        Assert.Equal(["k:1", "k:2"], publish.UserProperties.Select(static p => $"{p.Name}:{p.ReadValueAsString()}"));
        Assert.Equal(identified ? [7u, 300_000u] : [], publish.SubscriptionIdentifiers ?? []);

        // MQTT 3.1.1 has no properties: the payload alone.
        var v4 = Assert.IsType<MqttPublishPacket>(MqttNetDecode(frames.Get(message, 4, 0), 4));
        Assert.Equal("hello", Encoding.UTF8.GetString(v4.Payload.ToArray()));
    }

    [Theory]
    [InlineData(0, false)]
    [InlineData(1, false)]
    [InlineData(1, true)]
    public void PublishFrame_WithTopicAlias_MqttNetReadsTheAliasTopicOrEmptyAndTheRest(byte qos, bool topicOmitted)
    {
        var properties = new Relay.Core.Messages.MessageProperties { PayloadFormatIndicator = 1, ExpiresAt = 1_000_000, ContentType = "text/plain" };
        var message = new Relay.Core.Messages.RelayMessage { App = "a", Channel = "sensors/ü/1", Epoch = "e", Seq = 1, Data = "hello"u8.ToArray(), DataIsJson = false, Properties = properties };
        var frames = MqttPublishFrame.Of(message);
        var frame = frames.Get(message, 5, qos);
        List<int> identifiers = [7];
        var copy = new byte[frames.LengthFor(frame, identifiers, 9, topicOmitted, qos > 0)];
        frames.CopyFor(frame, identifiers, 9, topicOmitted, qos > 0, copy);
        if (qos > 0)
        {
            var at = MqttPublishFrame.PacketIdOffset(copy);
            copy[at] = 0x12;
            copy[at + 1] = 0x34;
        }

        MqttPublishFrame.WriteTimeLeft(copy, qos > 0, 42);
        var publish = Assert.IsType<MqttPublishPacket>(MqttNetDecode(copy, 5));
        Assert.Equal((topicOmitted ? string.Empty : "sensors/ü/1", (ushort)9, "hello"), (publish.Topic, publish.TopicAlias, Encoding.UTF8.GetString(publish.Payload.ToArray())));
        Assert.Equal((42u, "text/plain", qos > 0 ? 0x1234 : 0), (publish.MessageExpiryInterval, publish.ContentType, (int)publish.PacketIdentifier));
        Assert.Equal([7u], publish.SubscriptionIdentifiers);

        // The topic left out makes the packet shorter by the topic; the alias adds its three bytes.
        Assert.Equal(frame.Length + 3 + 2 - (topicOmitted ? Encoding.UTF8.GetByteCount(message.Channel) : 0), copy.Length);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PublishFrame_PerDelivery_AllocatesNothing_WithOrWithoutProperties(bool withProperties)
    {
        // What the write loop does per delivery once the message's frame exists: take the cached frame, copy it, write
        // the packet id, the Subscription Identifiers and the expiry's time left. The frame itself is made once per message.
        var properties = withProperties ? new Relay.Core.Messages.MessageProperties { ExpiresAt = long.MaxValue / 2, ContentType = "c", UserProperties = [new("k", "v")] } : null;
        var message = new Relay.Core.Messages.RelayMessage { App = "a", Channel = "t/1", Epoch = "e", Seq = 1, Data = "payload"u8.ToArray(), Properties = properties };
        List<int> identifiers = [7];
        var destination = new byte[256];
        Deliver();
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1_000; i++)
        {
            Deliver();
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);

        void Deliver()
        {
            var frames = MqttPublishFrame.Of(message);
            var frame = frames.Get(message, 5, 1);
            var length = frames.LengthFor(frame, identifiers, 1, topicOmitted: true, packetId: true);
            frames.CopyFor(frame, identifiers, 1, topicOmitted: true, packetId: true, destination);
            destination[MqttPublishFrame.PacketIdOffset(destination)] = 1;
            if (message.Properties is { ExpiresAt: not 0 } expiring)
            {
                MqttPublishFrame.WriteTimeLeft(destination.AsSpan(0, length), packetId: true, Relay.Ingress.Mqtt.MqttMessageProperties.SecondsLeft(expiring, 1_000));
            }
        }
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void RoundTrip_EveryPacketType_DecodesAsEncoded(byte level)
    {
        var v5 = level == 5;
        var properties = v5 ? new MqttProperties { ReasonString = "why", UserProperties = [new("x", "y")] } : null;
        MqttPacket[] packets =
        [
            new MqttConnAck { SessionPresent = true, ReasonCode = 0, Properties = v5 ? new MqttProperties { SessionExpiryInterval = 0, ServerKeepAlive = 30 } : null },
            new MqttPublish { Topic = "t/1", Qos = 1, PacketId = 77, Payload = new ReadOnlySequence<byte>([1, 2, 3]), Properties = v5 ? new MqttProperties { SubscriptionIdentifiers = [1, 300] } : null },
            new MqttAck(MqttPacketType.PubAck) { PacketId = 1, ReasonCode = v5 ? (byte)0x10 : (byte)0, Properties = properties },
            new MqttAck(MqttPacketType.PubRec) { PacketId = 2 },
            new MqttAck(MqttPacketType.PubRel) { PacketId = 3 },
            new MqttAck(MqttPacketType.PubComp) { PacketId = 4 },
            new MqttSubscribe { PacketId = 5, Subscriptions = { new MqttSubscription("a/#", 1) } },
            new MqttSubAck { PacketId = 5, ReasonCodes = { 1 } },
            new MqttUnsubscribe { PacketId = 6, Filters = { "a/#" } },
            new MqttSubAck(MqttPacketType.UnsubAck) { PacketId = 6, ReasonCodes = { v5 ? (byte)0 : (byte)0 } },
            MqttPing.Request,
            MqttPing.Response,
            new MqttDisconnect { ReasonCode = v5 ? MqttReasonCodes.ServerShuttingDown : (byte)0, Properties = properties },
        ];
        foreach (var packet in packets)
        {
            var bytes = MqttEncoder.Encode(packet, level);
            var decoded = DecodeOne(bytes, level);
            Assert.Equal(packet.Type, decoded.Type);
            Assert.Equal(bytes, MqttEncoder.Encode(decoded, level));

            // One byte a segment: a packet split anywhere decodes the same; every prefix is "not yet", never an error.
            Assert.Equal(bytes, MqttEncoder.Encode(DecodeOne(bytes, level, oneByteSegments: true), level));
            for (var cut = 0; cut < bytes.Length; cut++)
            {
                var partial = new ReadOnlySequence<byte>(bytes, 0, cut);
                Assert.False(MqttDecoder.TryRead(ref partial, level, 1 << 20, out _));
            }
        }
    }

    [Fact]
    public void Decode_TwoPacketsInOneRead_ReadsBothInOrder()
    {
        var bytes = MqttEncoder.Encode(MqttPing.Request, 4).Concat(MqttEncoder.Encode(new MqttAck(MqttPacketType.PubAck) { PacketId = 9 }, 4)).ToArray();
        var buffer = new ReadOnlySequence<byte>(bytes);
        Assert.True(MqttDecoder.TryRead(ref buffer, 4, 1000, out var first));
        Assert.True(MqttDecoder.TryRead(ref buffer, 4, 1000, out var second));
        Assert.Same(MqttPing.Request, first);
        Assert.Equal(9, Assert.IsType<MqttAck>(second).PacketId);
        Assert.True(buffer.IsEmpty);
    }

    public static TheoryData<string, byte, string, byte> Malformed => new()
    {
        // name, level, hex bytes, expected reason code
        { "remaining length of five bytes", 4, "30 FF FF FF FF 01", MqttReasonCodes.MalformedPacket },
        { "remaining length not in fewest bytes", 5, "C0 80 00", MqttReasonCodes.MalformedPacket },
        { "reserved type 0", 4, "00 00", MqttReasonCodes.MalformedPacket },
        { "AUTH in 3.1.1", 4, "F0 00", MqttReasonCodes.MalformedPacket },
        { "PINGREQ with flags", 4, "C1 00", MqttReasonCodes.MalformedPacket },
        { "PINGREQ with a body", 4, "C0 01 00", MqttReasonCodes.MalformedPacket },
        { "SUBSCRIBE flags 0000", 4, "80 06 00 01 00 01 61 00", MqttReasonCodes.MalformedPacket },
        { "SUBSCRIBE without filters", 4, "82 02 00 01", MqttReasonCodes.ProtocolError },
        { "SUBSCRIBE reserved option bits in 3.1.1", 4, "82 06 00 01 00 01 61 04", MqttReasonCodes.MalformedPacket },
        { "SUBSCRIBE QoS 3", 5, "82 07 00 01 00 00 01 61 03", MqttReasonCodes.MalformedPacket },
        { "SUBSCRIBE packet id 0", 4, "82 06 00 00 00 01 61 00", MqttReasonCodes.MalformedPacket },
        { "PUBLISH QoS 3", 4, "36 05 00 01 61 00 01", MqttReasonCodes.MalformedPacket },
        { "PUBLISH QoS 0 with DUP", 4, "38 03 00 01 61", MqttReasonCodes.MalformedPacket },
        { "PUBLISH topic with wildcard", 4, "30 03 00 01 23", MqttReasonCodes.ProtocolError },
        { "PUBLISH topic invalid UTF-8", 4, "30 04 00 02 C3 28", MqttReasonCodes.MalformedPacket },
        { "PUBLISH topic with U+0000", 4, "30 04 00 02 61 00", MqttReasonCodes.MalformedPacket },
        { "PUBLISH topic longer than the packet", 4, "30 03 00 09 61", MqttReasonCodes.MalformedPacket },
        { "PUBLISH QoS 1 packet id 0", 4, "32 05 00 01 61 00 00", MqttReasonCodes.MalformedPacket },
        { "PUBLISH empty topic in 3.1.1", 4, "30 02 00 00", MqttReasonCodes.MalformedPacket },
        { "PUBLISH empty topic without alias in 5", 5, "30 03 00 00 00", MqttReasonCodes.ProtocolError },
        { "PUBLISH unknown property", 5, "30 06 00 01 61 02 7F 00", MqttReasonCodes.MalformedPacket },
        { "PUBLISH property not allowed there", 5, "30 09 00 01 61 05 11 00 00 00 01", MqttReasonCodes.ProtocolError },
        { "PUBLISH property twice", 5, "30 08 00 01 61 04 01 00 01 01", MqttReasonCodes.ProtocolError },
        { "PUBLISH payload format 2", 5, "30 06 00 01 61 02 01 02", MqttReasonCodes.ProtocolError },
        { "PUBLISH properties past the packet", 5, "30 05 00 01 61 09 01", MqttReasonCodes.MalformedPacket },
        { "PUBACK with trailing byte in 3.1.1", 4, "40 03 00 01 00", MqttReasonCodes.MalformedPacket },
        { "DISCONNECT with a body in 3.1.1", 4, "E0 01 00", MqttReasonCodes.MalformedPacket },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void Decode_Malformed_ThrowsTheReasonCodeThatVersionPrescribes(string name, byte level, string hex, byte reason)
    {
        var bytes = Convert.FromHexString(hex.Replace(" ", string.Empty, StringComparison.Ordinal));
        var buffer = new ReadOnlySequence<byte>(bytes);
        var error = Assert.Throws<MqttProtocolException>(() => MqttDecoder.TryRead(ref buffer, level, 1 << 20, out _));
        Assert.True(reason == error.ReasonCode, $"{name}: expected 0x{reason:X2}, got 0x{error.ReasonCode:X2} ({error.Message})");
    }

    public static TheoryData<string, string, byte> MalformedConnect => new()
    {
        { "MQTT 3.1 (MQIsdp)", "10 0E 00 06 4D 51 49 73 64 70 03 02 00 3C 00 00", MqttReasonCodes.UnsupportedProtocolVersion },
        { "level 6", "10 0C 00 04 4D 51 54 54 06 02 00 3C 00 00", MqttReasonCodes.UnsupportedProtocolVersion },
        { "protocol name not MQTT", "10 0C 00 04 4D 51 54 58 04 02 00 3C 00 00", MqttReasonCodes.MalformedPacket },
        { "reserved flag set", "10 0C 00 04 4D 51 54 54 04 03 00 3C 00 00", MqttReasonCodes.MalformedPacket },
        { "will QoS without will", "10 0C 00 04 4D 51 54 54 04 0A 00 3C 00 00", MqttReasonCodes.MalformedPacket },
        { "password without user name in 3.1.1", "10 0F 00 04 4D 51 54 54 04 42 00 3C 00 00 00 01 70", MqttReasonCodes.MalformedPacket },
        { "client id past the packet", "10 0C 00 04 4D 51 54 54 04 02 00 3C 00 05", MqttReasonCodes.MalformedPacket },
        { "PINGREQ before CONNECT", "C0 00", MqttReasonCodes.ProtocolError },
        { "receive maximum 0", "10 10 00 04 4D 51 54 54 05 02 00 3C 03 21 00 00 00 00", MqttReasonCodes.ProtocolError },
    };

    [Theory]
    [MemberData(nameof(MalformedConnect))]
    public void Decode_MalformedConnect_ThrowsTheReasonCodeThatVersionPrescribes(string name, string hex, byte reason)
    {
        var bytes = Convert.FromHexString(hex.Replace(" ", string.Empty, StringComparison.Ordinal));
        var buffer = new ReadOnlySequence<byte>(bytes);
        var error = Assert.Throws<MqttProtocolException>(() => MqttDecoder.TryRead(ref buffer, 0, 1 << 20, out _));
        Assert.True(reason == error.ReasonCode, $"{name}: expected 0x{reason:X2}, got 0x{error.ReasonCode:X2} ({error.Message})");
    }

    [Fact]
    public void Decode_OversizedPacket_RefusedFromItsHeaderBeforeTheBodyArrives()
    {
        // A PUBLISH announcing 2 MiB: refused with 0x95 after five bytes, without waiting for (or buffering) the body.
        var header = new byte[] { 0x30, 0x80, 0x80, 0x80, 0x01 };
        var buffer = new ReadOnlySequence<byte>(header);
        var error = Assert.Throws<MqttProtocolException>(() => MqttDecoder.TryRead(ref buffer, 4, 1024 * 1024, out _));
        Assert.Equal(MqttReasonCodes.PacketTooLarge, error.ReasonCode);

        // At the limit exactly, it is accepted.
        var atLimit = MqttEncoder.Encode(new MqttPublish { Topic = "t", Payload = new ReadOnlySequence<byte>(new byte[100]) }, 4);
        var ok = new ReadOnlySequence<byte>(atLimit);
        Assert.True(MqttDecoder.TryRead(ref ok, 4, atLimit.Length, out _));
        var over = new ReadOnlySequence<byte>(atLimit);
        Assert.Throws<MqttProtocolException>(() => MqttDecoder.TryRead(ref over, 4, atLimit.Length - 1, out _));
    }

    [Fact]
    public void Decode_FuzzedInput_NeverThrowsAnythingButTheCodecsError()
    {
        // Fixed seed: random bytes and single-byte mutations of valid packets of both versions, each fed whole and in
        // pieces; the decoder may accept, wait or refuse, and nothing else.
        var random = new Random(20261205);
        var seeds = new List<(byte Level, byte[] Bytes)>();
        foreach (var level in new byte[] { 4, 5 })
        {
            seeds.Add((0, Encode(new MqttConnectPacket { ClientId = "c", Username = "u", Password = [1], WillFlag = true, WillTopic = "w", WillMessage = [2], SessionExpiryInterval = level == 5 ? 5u : 0 }, level)));
            seeds.Add((level, Encode(new MqttPublishPacket { Topic = "a/b", QualityOfServiceLevel = MqttQualityOfServiceLevel.AtLeastOnce, PacketIdentifier = 3, PayloadSegment = new byte[] { 1, 2, 3 }, ContentType = level == 5 ? "x" : null }, level)));
            seeds.Add((level, Encode(new MqttSubscribePacket { PacketIdentifier = 4, TopicFilters = [new MqttTopicFilter { Topic = "a/#" }] }, level)));
            seeds.Add((level, Encode(new MqttUnsubscribePacket { PacketIdentifier = 5, TopicFilters = ["a/#"] }, level)));
            seeds.Add((level, Encode(new MqttPubAckPacket { PacketIdentifier = 6 }, level)));
            seeds.Add((level, MqttEncoder.Encode(new MqttDisconnect { ReasonCode = 4, Properties = level == 5 ? new MqttProperties { ReasonString = "r" } : null }, level)));
        }

        var accepted = 0;
        var refused = 0;
        for (var i = 0; i < 40_000; i++)
        {
            byte level;
            byte[] bytes;
            if (i % 4 == 0)
            {
                level = (byte)(random.Next(3) switch { 0 => 0, 1 => 4, _ => 5 });
                bytes = new byte[random.Next(1, 64)];
                random.NextBytes(bytes);
            }
            else
            {
                var seed = seeds[random.Next(seeds.Count)];
                level = seed.Level;
                bytes = seed.Bytes.ToArray();
                for (var m = random.Next(1, 4); m > 0; m--)
                {
                    bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
                }
            }

            try
            {
                var buffer = new ReadOnlySequence<byte>(bytes);
                while (MqttDecoder.TryRead(ref buffer, level, 4096, out var packet))
                {
                    accepted++;
                    level = level == 0 ? ((MqttConnect)packet!).ProtocolLevel : level;
                }
            }
            catch (MqttProtocolException)
            {
                refused++;
            }
        }

        Assert.True(accepted > 1000 && refused > 1000, $"accepted {accepted}, refused {refused}: the fuzz should exercise both");
    }

    // The read loop takes a subscriber's acknowledgements without a packet object (MqttDecoder.TryReadAck, one per QoS 1
    // or 2 delivery): what it reads must be what TryRead reads, to the byte, and what it leaves TryRead reads or refuses.
    /// <summary>
    /// The acknowledgements a connection writes without an <see cref="MqttAck"/> (<see cref="MqttEncoder.WriteAck"/>):
    /// byte for byte what the encoder writes for the same ack, for every type, ids at the edges and reason codes (left
    /// out on 3.1.1 and for Success), and read back by MQTTnet; PINGRESP's fixed bytes alike.
    /// </summary>
    [Theory]
    [InlineData(4)]
    [InlineData(5)]
    public void WriteAck_IsWhatTheEncoderWritesForTheAck_AndMqttNetReadsIt(byte level)
    {
        var v5 = level == 5;
        foreach (var type in new[] { MqttPacketType.PubAck, MqttPacketType.PubRec, MqttPacketType.PubRel, MqttPacketType.PubComp })
        {
            foreach (var id in new ushort[] { 1, 0x00FF, 0x0100, 0x1234, 65535 })
            {
                foreach (var reason in new byte[] { 0, MqttReasonCodes.NoMatchingSubscribers, MqttReasonCodes.PacketIdentifierNotFound, MqttReasonCodes.QuotaExceeded })
                {
                    var written = new ArrayBufferWriter<byte>();
                    var count = MqttEncoder.WriteAck(written, type, id, reason, v5);
                    var encoded = MqttEncoder.Encode(new MqttAck(type) { PacketId = id, ReasonCode = v5 ? reason : (byte)0 }, level);
                    Assert.Equal(encoded, written.WrittenSpan.ToArray());
                    Assert.Equal(encoded.Length, count);
                    var decoded = MqttNetDecode(encoded, level);
                    Assert.Equal(id, decoded switch
                    {
                        MqttPubAckPacket p => p.PacketIdentifier,
                        MqttPubRecPacket p => p.PacketIdentifier,
                        MqttPubRelPacket p => p.PacketIdentifier,
                        MqttPubCompPacket p => p.PacketIdentifier,
                        _ => throw new InvalidOperationException($"{type} read as {decoded.GetType().Name}"),
                    });
                }
            }
        }

        Assert.Equal(MqttEncoder.Encode(MqttPing.Response, level), Relay.Ingress.Mqtt.MqttOutbound.PingResponse);
    }

    [Theory]
    [MemberData(nameof(Levels))]
    public void TryReadAck_MqttNetAcks_ReadsWhatTryReadReads(byte level)
    {
        var acks = new List<MQTTnet.Packets.MqttPacket>
        {
            new MqttPubAckPacket { PacketIdentifier = 1 },
            new MqttPubRecPacket { PacketIdentifier = 0x1234 },
            new MqttPubRelPacket { PacketIdentifier = 65535 },
            new MqttPubCompPacket { PacketIdentifier = 7 },
        };
        if (level == 5)
        {
            acks.Add(new MqttPubAckPacket { PacketIdentifier = 8, ReasonCode = MqttPubAckReasonCode.NoMatchingSubscribers });
            acks.Add(new MqttPubRecPacket { PacketIdentifier = 9, ReasonCode = MqttPubRecReasonCode.QuotaExceeded });
            acks.Add(new MqttPubAckPacket { PacketIdentifier = 10, ReasonCode = MqttPubAckReasonCode.NotAuthorized, ReasonString = "no" });
        }

        var fast = 0;
        foreach (var ack in acks)
        {
            var bytes = Encode(ack, level);
            var buffer = new ReadOnlySequence<byte>([.. bytes, 0xC0, 0x00]);
            var expected = Assert.IsType<MqttAck>(DecodeOne(bytes, level));
            if (MqttDecoder.TryReadAck(ref buffer, level, out var type, out var id, out var reason))
            {
                fast++;
                Assert.Equal((expected.Type, expected.PacketId, expected.ReasonCode), (type, id, reason));
                Assert.Equal(2, buffer.Length);
            }
            else
            {
                // Only an ack with properties is left to TryRead.
                Assert.NotNull(expected.Properties);
                Assert.Equal(bytes.Length + 2, buffer.Length);
            }

            // Before CONNECT nothing is read as an ack (TryRead refuses it), nor in pieces (TryRead waits for the rest).
            var early = new ReadOnlySequence<byte>(bytes);
            Assert.False(MqttDecoder.TryReadAck(ref early, 0, out _, out _, out _));
            var pieces = Segments(bytes);
            Assert.False(MqttDecoder.TryReadAck(ref pieces, level, out _, out _, out _));
        }

        Assert.Equal(level == 5 ? 6 : 4, fast);
    }

    [Fact]
    public void TryReadAck_MutatedAcks_AcceptsNothingTryReadRefuses()
    {
        var random = new Random(20261207);
        var seeds = new[] { "40 02 00 01", "50 02 01 00", "62 02 00 05", "70 02 FF FF", "40 03 00 02 10", "50 04 00 03 80 00", "40 04 00 04 00 00" };
        var fast = 0;
        for (var i = 0; i < 20_000; i++)
        {
            var bytes = Convert.FromHexString(seeds[random.Next(seeds.Length)].Replace(" ", string.Empty, StringComparison.Ordinal));
            bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
            foreach (var level in new byte[] { 4, 5 })
            {
                var buffer = new ReadOnlySequence<byte>(bytes);
                if (!MqttDecoder.TryReadAck(ref buffer, level, out var type, out var id, out var reason))
                {
                    continue;
                }

                fast++;
                var whole = new ReadOnlySequence<byte>(bytes);
                Assert.True(MqttDecoder.TryRead(ref whole, level, 4096, out var packet), $"TryRead waits for {Convert.ToHexString(bytes)} (level {level}), TryReadAck read it");
                var ack = Assert.IsType<MqttAck>(packet);
                Assert.Equal((ack.Type, ack.PacketId, ack.ReasonCode), (type, id, reason));
                Assert.Equal(whole.Length, buffer.Length);
            }
        }

        Assert.True(fast > 1000, $"only {fast} mutated acks read: the test should exercise the fast path");
    }

    private static MqttPacket DecodeOne(byte[] bytes, byte level, bool oneByteSegments = false)
    {
        var buffer = oneByteSegments ? Segments(bytes) : new ReadOnlySequence<byte>(bytes);
        Assert.True(MqttDecoder.TryRead(ref buffer, level, 1 << 20, out var packet));
        Assert.True(buffer.IsEmpty, "the decoder consumed the whole packet");
        return packet!;
    }

    private static byte[] Encode(MQTTnet.Packets.MqttPacket packet, byte level)
    {
        var adapter = new MqttPacketFormatterAdapter(level == 5 ? MqttProtocolVersion.V500 : MqttProtocolVersion.V311, new MqttBufferWriter(4096, 1 << 20));
        return adapter.Encode(packet).ToArray();
    }

    private static MQTTnet.Packets.MqttPacket MqttNetDecode(byte[] bytes, byte level)
    {
        var lengthBytes = 1;
        while ((bytes[lengthBytes] & 0x80) != 0)
        {
            lengthBytes++;
        }

        var adapter = new MqttPacketFormatterAdapter(level == 5 ? MqttProtocolVersion.V500 : MqttProtocolVersion.V311, new MqttBufferWriter(4096, 1 << 20));
        return adapter.Decode(new ReceivedMqttPacket(bytes[0], new ArraySegment<byte>(bytes, 1 + lengthBytes, bytes.Length - 1 - lengthBytes), bytes.Length));
    }

    private static ReadOnlySequence<byte> Segments(byte[] bytes)
    {
        if (bytes.Length == 0)
        {
            return ReadOnlySequence<byte>.Empty;
        }

        var first = new Segment(bytes.AsMemory(0, 1), 0);
        var last = first;
        for (var i = 1; i < bytes.Length; i++)
        {
            last = last.Append(bytes.AsMemory(i, 1));
        }

        return new ReadOnlySequence<byte>(first, 0, last, 1);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}

using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Relay.Bus;
using Relay.Bus.FanOut;
using Relay.Bus.InMemory;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// A message routing sequences after an MQTT subscription was added but before it answers the subscription's position
/// reaches the client: the subscription keeps what reached the node after it was added (MQTT tells the client no seq),
/// and its session must not count the position as given already (it did, and dropped that message as a copy). Over a
/// real bus that timing cannot be chosen, so the node runs on a bus that wraps the in-memory one: when the test's
/// channel's position is asked, it publishes one message, waits until the node has it, and only then asks routing.
/// </summary>
public sealed class MqttSubscribePositionTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(10);

    [Theory(Timeout = 60_000)]
    [InlineData(5)]
    [InlineData(4)]
    public async Task MessageSequencedWhileThePositionIsAsked_ReachesTheNewSubscriber(byte level)
    {
        var bus = new PublishingFirstBus();
        await using var server = await RelayServer.StartAsync(ServerFixture.Settings(), services => services.Replace(ServiceDescriptor.Singleton<IRelayBus>(sp => bus.Wrap(sp.GetRequiredService<InMemoryBus>()))));
        await using var subscriber = await RawMqttClient.OpenAsync(server);
        await subscriber.ConnectAsync(level, $"position-{level}-{Guid.NewGuid():N}"[..24]);
        await subscriber.SendAsync(RawMqttClient.Subscribe(PublishingFirstBus.Channel, qos: 1, level: level));

        var packets = new List<byte>();
        while (await subscriber.ReadPacketAsync(s_wait) is var (first, body))
        {
            packets.Add(first);
            if ((first & 0xF0) == 0x30)
            {
                Assert.Contains("published while the position was asked", System.Text.Encoding.UTF8.GetString(body), StringComparison.Ordinal);
                Assert.Equal(1, bus.Published);
                return;
            }
        }

        Assert.Fail($"the connection closed without the message (packets: {string.Join(", ", packets.Select(p => $"0x{p:X2}"))})");
    }

    private sealed class PublishingFirstBus : ForwardingBus
    {
        public const string Channel = "subscribe-position";

        private readonly TaskCompletionSource _delivered = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _published;

        public int Published => Volatile.Read(ref _published);

        public override async ValueTask<RoutingReply> SendToRoutingAsync(RoutingRequest request, CancellationToken cancellationToken)
        {
            if (request is PositionRequest { Channel: Channel } && Interlocked.Exchange(ref _published, 1) == 0)
            {
                var data = "\"published while the position was asked\""u8.ToArray();
                Assert.IsType<PublishReply>(await Inner.SendToRoutingAsync(new PublishRequest(request.App, Channel, [new PublishItem(Name: null, data, DataIsJson: true, Id: null)], ClientId: null, TraceParent: null), cancellationToken));
                await _delivered.Task.WaitAsync(s_wait, cancellationToken);
            }

            return await Inner.SendToRoutingAsync(request, cancellationToken);
        }

        public override IDisposable ServeNode(string nodeId, INodeHandler handler) => Inner.ServeNode(nodeId, new Noting(this, handler));

        // Tells the bus once the node has the message (it is then in the new subscription's buffer).
        private sealed class Noting(PublishingFirstBus bus, INodeHandler handler) : INodeHandler
        {
            public async ValueTask OnDeliverAsync(RelayMessage message)
            {
                await handler.OnDeliverAsync(message);
                if (message.Channel == Channel && message.PresenceAction is null)
                {
                    bus._delivered.TrySetResult();
                }
            }

            public ValueTask OnResyncAsync() => handler.OnResyncAsync();
        }
    }
}

using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Relay.Bus;
using Relay.Bus.FanOut;
using Relay.Bus.InMemory;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Testing;

namespace Relay.Services.Tests.Subscriptions;

/// <summary>
/// The first subscriber of a busy channel on a node, when deliveries are lost just as it subscribes: the node's first
/// deliveries of the channel arrive before the subscription's position does, past seqs that never reached the node.
/// The node's gap repair starts following the channel at the first delivery it saw, so nothing else would read those
/// seqs back; the subscription reads them itself and sends them before the buffered ones. Over a real bus that timing
/// cannot be chosen, so the node runs on a bus that wraps the in-memory one: it says it may lose deliveries (as Redis
/// pub/sub may), and when the test's channel's position is asked, publishes three messages after it and loses the
/// first two on their way to the node before it answers.
/// </summary>
public sealed class FirstSubscriberGapTests
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(10);

    [Fact(Timeout = 60_000)]
    public async Task DeliveriesLost_BeforeTheFirstSubscribersPosition_AreReadBack_AndSentInOrder()
    {
        var bus = new LosingBus();
        await using var server = await RelayServer.StartAsync(services: services => services.Replace(ServiceDescriptor.Singleton<IRelayBus>(sp => bus.Wrap(sp.GetRequiredService<InMemoryBus>()))));
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key, "publisher"));
        for (var n = 1; n <= 2; n++)
        {
            var ack = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = LosingBus.Channel, ["data"] = n });
            Assert.True(ack.GetProperty("type").GetString() == "ok", ack.GetRawText());
        }

        // The position is 2; 3 and 4 are published and lost to the node, 5 reaches it, and only then the position.
        bus.Arm();
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key, "subscriber"));
        var ok = await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = LosingBus.Channel });
        Assert.True(ok.GetProperty("type").GetString() == "ok", ok.GetRawText());
        Assert.Equal([3L, 4L], bus.Lost);

        var last = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = LosingBus.Channel, ["data"] = 6 });
        Assert.True(last.GetProperty("type").GetString() == "ok", last.GetRawText());

        var received = new List<(long Seq, int N)>();
        while (received.Count < 4)
        {
            var message = await subscriber.ReceiveMessageAsync(s_wait);
            Assert.True(message.GetProperty("type").GetString() == "message", $"after {received.Count}: {message.GetRawText()}");
            received.Add((message.GetProperty("seq").GetInt64(), message.GetProperty("data").GetInt32()));
        }

        Assert.Equal([(3L, 3), (4L, 4), (5L, 5), (6L, 6)], received);
    }

    private sealed class LosingBus : ForwardingBus
    {
        public const string Channel = "first-subscriber";

        private int _armed;
        private long _loseFrom;
        private long _loseUpTo;
        private TaskCompletionSource? _passed;

        public List<long> Lost { get; } = [];

        public override bool MayLoseDeliveries => true;

        public void Arm() => Volatile.Write(ref _armed, 1);

        public override async ValueTask<RoutingReply> SendToRoutingAsync(RoutingRequest request, CancellationToken cancellationToken)
        {
            var reply = await Inner.SendToRoutingAsync(request, cancellationToken);
            if (request is PositionRequest { Channel: Channel } && reply is PositionReply { Position: var position } && Interlocked.Exchange(ref _armed, 0) == 1)
            {
                _passed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                Volatile.Write(ref _loseUpTo, position.Seq + 2);
                Volatile.Write(ref _loseFrom, position.Seq + 1);
                for (var n = position.Seq + 1; n <= position.Seq + 3; n++)
                {
                    var data = System.Text.Encoding.UTF8.GetBytes(n.ToString(System.Globalization.CultureInfo.InvariantCulture));
                    var published = await Inner.SendToRoutingAsync(new PublishRequest(request.App, Channel, [new PublishItem(Name: null, data, DataIsJson: true, Id: null)], ClientId: null, TraceParent: null), cancellationToken);
                    Assert.IsType<PublishReply>(published);
                }

                // The third reached the node (after the two lost) before the subscription hears its position.
                await _passed.Task.WaitAsync(s_wait, cancellationToken);
            }

            return reply;
        }

        public override IDisposable ServeNode(string nodeId, INodeHandler handler) => Inner.ServeNode(nodeId, new Losing(this, handler));

        private sealed class Losing(LosingBus bus, INodeHandler handler) : INodeHandler
        {
            public ValueTask OnDeliverAsync(RelayMessage message)
            {
                if (message.Channel == Channel && message.PresenceAction is null && Volatile.Read(ref bus._loseFrom) is > 0 and var from)
                {
                    if (message.Seq >= from && message.Seq <= Volatile.Read(ref bus._loseUpTo))
                    {
                        lock (bus.Lost)
                        {
                            bus.Lost.Add(message.Seq);
                        }

                        return ValueTask.CompletedTask;
                    }

                    var delivered = handler.OnDeliverAsync(message);
                    if (message.Seq == Volatile.Read(ref bus._loseUpTo) + 1)
                    {
                        bus._passed?.TrySetResult();
                    }

                    return delivered;
                }

                return handler.OnDeliverAsync(message);
            }

            public ValueTask OnResyncAsync() => handler.OnResyncAsync();
        }
    }
}

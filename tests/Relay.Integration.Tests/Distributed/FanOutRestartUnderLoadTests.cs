using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Relay.Core.Protocol;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Distributed;

/// <summary>
/// The fan-out process killed and started again while a publisher sends 1,000 messages a second, with the namespace
/// defaults as shipped (history 200): more is published while fan-out is away than history holds, so the subscriber's
/// node cannot read the gap back. The subscriber must never see seq jump within an epoch without being told: it gets
/// <c>disconnect</c> (50300, <c>reconnect: true</c>) first, resubscribes with <c>since</c> and learns
/// <c>recovered: false</c>; every acknowledged message is either delivered once, in order, or inside a range the
/// protocol reported lost.
/// </summary>
public sealed class FanOutRestartUnderLoadTests(ITestOutputHelper output)
{
    private const string Channel = "telemetry";
    private const int Total = 6000;
    private const int PerSecond = 1000;

    [Fact]
    public async Task FanOutKilledAt1000PerSecond_SubscriberIsToldBeforeAnyJump_AndEveryAcknowledgedMessageIsDeliveredOrReportedLost()
    {
        await using var cluster = await RelayCluster.StartAsync(new Dictionary<string, string>
        {
            // One connection publishes at the rate under test (the product's default is 100/s per connection).
            ["Relay__Ingress__PublishRatePerSecond"] = "5000",
            ["Relay__Ingress__PublishBurst"] = "10000",
        });
        cluster.Output = output.WriteLine;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(90));

        var subscriber = new FollowingSubscriber(RelayCluster.RealtimeUri(cluster.IngressB), output);
        await subscriber.StartAsync();
        await using var publisher = await TestSocket.ConnectAsync(RelayCluster.RealtimeUri(cluster.IngressA));
        var acknowledged = new long[Total + 1];
        var publishing = PacedPublisher.PublishAsync(publisher, acknowledged, 1, Total, PerSecond, static _ => Channel, output.WriteLine, stop.Token);
        var following = subscriber.FollowAsync(Total, stop.Token);

        // Fan-out dies two seconds in (about 2,000 published) and a new one starts a second later.
        await WaitUntilAsync(() => Volatile.Read(ref acknowledged[2000]) != 0, stop.Token);
        cluster.FanOut.Kill();
        output.WriteLine($"fan-out killed at {DateTime.UtcNow:HH:mm:ss.fff}");
        await Task.Delay(1000, stop.Token);
        await using var fanOut = await cluster.StartServiceAsync("fanout-2", "Relay.FanOut");
        output.WriteLine($"fan-out-2 up at {DateTime.UtcNow:HH:mm:ss.fff}");

        await publishing;
        Assert.Equal(Enumerable.Range(1, Total).Select(static i => (long)i).Order(), acknowledged.Skip(1).Order());
        await following;

        // More was published while fan-out was away than history holds: the node told the subscriber at least once.
        output.WriteLine($"received {subscriber.Received.Count}, reported lost {subscriber.Lost.Count} in {subscriber.Resumes} resumes");
        Assert.True(subscriber.Resumes >= 1, "the subscriber was never told to recover, yet history (200) cannot hold what fan-out missed");
        Assert.Equal(Total, subscriber.Received.Count + subscriber.Lost.Count);
        Assert.Equal(Enumerable.Range(1, Total).Select(static i => (long)i), subscriber.Received.Concat(subscriber.Lost).Order());
        Assert.Equal(subscriber.Received.Order(), subscriber.Received);

        // The node counted what it could not repair; what the client lost includes it (and what passed while it resumed).
        var unrepaired = await MetricAsync(cluster.IngressB, "relay_ingress_gap_messages_unrepaired_total");
        output.WriteLine($"ingress B: unrepaired {unrepaired}, repaired {await MetricAsync(cluster.IngressB, "relay_ingress_gap_messages_repaired_total")}");
        Assert.InRange(unrepaired, 1, subscriber.Lost.Count);
    }

    private static async Task WaitUntilAsync(Func<bool> condition, CancellationToken cancellationToken)
    {
        while (!condition())
        {
            await Task.Delay(10, cancellationToken);
        }
    }

    private static Task<long> MetricAsync(ServiceProcess node, string name) =>
        PrometheusText.ScrapeAsync(new Uri($"http://127.0.0.1:{node.Port}/"), name);

    /// <summary>
    /// A client that follows the channel the way the protocol asks: every message must be the next seq of its epoch;
    /// on <c>disconnect</c> with <c>reconnect: true</c> it reconnects and resubscribes with <c>since</c>, and when the
    /// reply says <c>recovered: false</c> it notes the seqs up to the reply's position as lost.
    /// </summary>
    private sealed class FollowingSubscriber(Uri endpoint, ITestOutputHelper output)
    {
        private TestSocket? _socket;
        private string _epoch = "";
        private long _last;

        public List<long> Received { get; } = [];

        public List<long> Lost { get; } = [];

        public int Resumes { get; private set; }

        public async Task StartAsync()
        {
            _socket = await TestSocket.ConnectAsync(endpoint);
            var reply = await _socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = Channel });
            (_epoch, _last) = (reply.GetProperty("epoch").GetString()!, reply.GetProperty("seq").GetInt64());
        }

        public async Task FollowAsync(long upTo, CancellationToken cancellationToken)
        {
            try
            {
                while (_last < upTo)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var frame = await _socket!.ReceiveAsync(TimeSpan.FromSeconds(20));
                    switch (frame.GetProperty("type").GetString())
                    {
                        case "message":
                            var seq = frame.GetProperty("seq").GetInt64();
                            Assert.True(frame.GetProperty("epoch").GetString() == _epoch, $"epoch changed at seq {seq}: {frame.GetRawText()}");
                            Assert.True(seq == _last + 1, $"seq jumped from {_last} to {seq} within the epoch without a disconnect first");
                            Received.Add(seq);
                            _last = seq;
                            break;
                        case "disconnect":
                            Assert.Equal(ErrorCodes.Unavailable, frame.GetProperty("code").GetInt32());
                            Assert.True(frame.GetProperty("reconnect").GetBoolean(), frame.GetRawText());
                            output.WriteLine($"told to recover after seq {_last}: {frame.GetRawText()}");
                            await ResumeAsync();
                            break;
                    }
                }
            }
            finally
            {
                if (_socket is not null)
                {
                    await _socket.DisposeAsync();
                }
            }
        }

        private async Task ResumeAsync()
        {
            Resumes++;
            await _socket!.DisposeAsync();
            _socket = await TestSocket.ConnectAsync(endpoint);
            var reply = await _socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = Channel, ["since"] = new { epoch = _epoch, seq = _last } });
            Assert.Equal(_epoch, reply.GetProperty("epoch").GetString());
            var position = reply.GetProperty("seq").GetInt64();
            output.WriteLine($"resumed after {_last}: recovered {reply.GetProperty("recovered").GetBoolean()}, position {position}");
            if (!reply.GetProperty("recovered").GetBoolean())
            {
                for (var seq = _last + 1; seq <= position; seq++)
                {
                    Lost.Add(seq);
                }

                _last = position;
            }
        }
    }
}

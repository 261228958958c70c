using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Relay.Client;
using Relay.Testing;

namespace Relay.Services.Tests.Client;

public abstract class RelayClientSpec(IServerFixture fixture)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    private readonly RelayServer _server = fixture.Server;

    [Fact]
    public async Task ConnectAsync_WithKeyAndClientId_IsConnectedWithServerIds()
    {
        await using var client = await ConnectAsync("alice");

        Assert.Equal(RelayConnectionState.Connected, client.State);
        Assert.StartsWith("c-", client.ConnectionId, StringComparison.Ordinal);
        Assert.Equal("alice", client.ClientId);
    }

    [Fact]
    public async Task ConnectAsync_WithHttpBaseAddress_NormalisesToRealtimeEndpoint()
    {
        await using var client = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = _server.BaseAddress, Key = RelayServer.Key }).WaitAsync(Timeout);

        var ack = await client.PublishAsync("base:address", new { ok = true }).WaitAsync(Timeout);

        Assert.Equal(1, ack.Seq);
    }

    [Fact]
    public async Task ConnectAsync_WithWrongSecret_ThrowsRelayClientException40102()
    {
        var error = await Assert.ThrowsAsync<RelayClientException>(() => RelayClient.ConnectAsync(new RelayClientOptions
        {
            Endpoint = _server.RealtimeUri,
            Key = "test.root:not-the-secret-0123456789",
        }).WaitAsync(Timeout));

        Assert.Equal(40102, error.Code);
    }

    [Fact]
    public async Task ConnectAsync_NothingListening_ThrowsRelayClientException50300()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();

        var error = await Assert.ThrowsAsync<RelayClientException>(() => RelayClient.ConnectAsync(new RelayClientOptions
        {
            Endpoint = new Uri($"ws://127.0.0.1:{port}/v1/realtime"),
            Key = RelayServer.Key,
        }).WaitAsync(Timeout));

        Assert.Equal(RelayClientException.ConnectionLost, error.Code);
    }

    [Fact]
    public async Task PublishAsync_Repeatedly_AckSeqIncreasesByOne()
    {
        await using var client = await ConnectAsync();

        var seqs = new List<long>();
        for (var i = 0; i < 5; i++)
        {
            var ack = await client.PublishAsync("acks", new { i }).WaitAsync(Timeout);
            Assert.Equal("acks", ack.Channel);
            seqs.Add(ack.Seq);
        }

        Assert.Equal([1L, 2, 3, 4, 5], seqs);
    }

    [Fact]
    public async Task PublishAsync_SameIdTwice_AcksFirstSeqAndDeliversOnce()
    {
        await using var client = await ConnectAsync();
        var subscription = await client.SubscribeAsync("chat:idempotent").WaitAsync(Timeout);

        var first = await client.PublishAsync("chat:idempotent", new { n = 1 }, id: "same").WaitAsync(Timeout);
        var again = await client.PublishAsync("chat:idempotent", new { n = 1 }, id: "same").WaitAsync(Timeout);
        var next = await client.PublishAsync("chat:idempotent", new { n = 2 }).WaitAsync(Timeout);

        Assert.Equal(first.Seq, again.Seq);
        var messages = await ReadAsync(subscription, 2);
        Assert.Equal([first.Seq, next.Seq], messages.Select(m => m.Seq));
    }

    [Fact]
    public async Task SubscribeAsync_WithHandler_ReceivesMessageWithEveryField()
    {
        await using var subscriber = await ConnectAsync("bob");
        await using var publisher = await ConnectAsync("alice");
        var received = new TaskCompletionSource<RelayMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        var subscription = await subscriber.SubscribeAsync("chat:handler", m => received.TrySetResult(m)).WaitAsync(Timeout);
        var before = DateTimeOffset.UtcNow;

        var ack = await publisher.PublishAsync("chat:handler", new { text = "hi" }, name: "chat", id: "m1").WaitAsync(Timeout);
        var message = await received.Task.WaitAsync(Timeout);

        Assert.Equal("chat:handler", message.Channel);
        Assert.Equal(ack.Seq, message.Seq);
        Assert.Equal(subscription.Epoch, message.Epoch);
        Assert.False(string.IsNullOrEmpty(message.Epoch));
        Assert.Equal("m1", message.Id);
        Assert.Equal("chat", message.Name);
        Assert.Equal("hi", message.Data.GetProperty("text").GetString());
        Assert.Equal("alice", message.ClientId);
        Assert.Null(message.Encoding);
        Assert.InRange(message.Timestamp, before.AddSeconds(-5), DateTimeOffset.UtcNow.AddSeconds(5));
        Assert.Equal(ack.Seq, subscription.LastSeq);
    }

    [Fact]
    public async Task ReadAllAsync_AfterSeveralPublishes_YieldsThemInSeqOrder()
    {
        await using var subscriber = await ConnectAsync();
        await using var publisher = await ConnectAsync();
        var subscription = await subscriber.SubscribeAsync("chat:stream").WaitAsync(Timeout);

        for (var i = 1; i <= 20; i++)
        {
            await publisher.PublishAsync("chat:stream", i).WaitAsync(Timeout);
        }

        var messages = await ReadAsync(subscription, 20);
        Assert.Equal(Enumerable.Range(1, 20).Select(i => (long)i), messages.Select(m => m.Seq));
        Assert.Equal(Enumerable.Range(1, 20), messages.Select(m => m.GetData<int>()));
    }

    [Fact]
    public async Task SubscribeAsync_ToPattern_ReceivesOnlyMatchingChannels()
    {
        await using var subscriber = await ConnectAsync();
        await using var publisher = await ConnectAsync();
        var subscription = await subscriber.SubscribeAsync("chat/+").WaitAsync(Timeout);
        Assert.True(subscription.IsPattern);

        await publisher.PublishAsync("other/a", "no").WaitAsync(Timeout);
        await publisher.PublishAsync("chat/a/deeper", "no").WaitAsync(Timeout);
        await publisher.PublishAsync("chat/a", "a").WaitAsync(Timeout);
        await publisher.PublishAsync("chat/b", "b").WaitAsync(Timeout);

        var messages = await ReadAsync(subscription, 2);
        Assert.Equal(["chat/a", "chat/b"], messages.Select(m => m.Channel).Order(StringComparer.Ordinal));
        Assert.Equal(["a", "b"], messages.Select(m => m.GetData<string>()).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task PublishAsync_WithSubscribeOnlyKey_ThrowsRelayClientException40300()
    {
        await using var client = await ConnectAsync(key: RelayServer.SubscribeOnlyKey);

        var error = await Assert.ThrowsAsync<RelayClientException>(() => client.PublishAsync("chat:forbidden", new { text = "x" }).WaitAsync(Timeout));

        Assert.Equal(40300, error.Code);
        Assert.Equal(403, error.StatusCode);
        Assert.Equal(RelayConnectionState.Connected, client.State);
    }

    [Fact]
    public async Task SubscribeAsync_InvalidChannel_ThrowsRelayClientException40002AndCanSubscribeAgain()
    {
        await using var client = await ConnectAsync();

        var error = await Assert.ThrowsAsync<RelayClientException>(() => client.SubscribeAsync("a//b").WaitAsync(Timeout));
        var subscription = await client.SubscribeAsync("a/b").WaitAsync(Timeout);

        Assert.Equal(40002, error.Code);
        Assert.Equal("a/b", subscription.Channel);
    }

    [Fact]
    public async Task UnsubscribeAsync_AfterUnsubscribing_EndsReadAllAndDeliversNoMore()
    {
        await using var subscriber = await ConnectAsync();
        await using var publisher = await ConnectAsync();
        var delivered = 0;
        var subscription = await subscriber.SubscribeAsync("chat:unsub", _ => Interlocked.Increment(ref delivered)).WaitAsync(Timeout);
        await publisher.PublishAsync("chat:unsub", 1).WaitAsync(Timeout);
        Assert.Single(await ReadAsync(subscription, 1));

        await subscription.UnsubscribeAsync().WaitAsync(Timeout);
        await publisher.PublishAsync("chat:unsub", 2).WaitAsync(Timeout);
        var after = await ReadAsync(subscription, int.MaxValue);

        Assert.Empty(after);
        // A message for a channel still subscribed proves later frames were read.
        var other = await subscriber.SubscribeAsync("chat:unsub-other").WaitAsync(Timeout);
        await publisher.PublishAsync("chat:unsub-other", 3).WaitAsync(Timeout);
        Assert.Single(await ReadAsync(other, 1));
        Assert.Equal(1, Volatile.Read(ref delivered));
    }

    [Fact]
    public async Task AbortConnection_WhileAnotherClientPublishes_ResumesAndDeliversEachMessageOnceInOrder()
    {
        const string channel = "chat:reconnect";
        await using var subscriber = await ConnectAsync("sub", o => o.MinReconnectDelay = TimeSpan.FromSeconds(1));
        await using var publisher = await ConnectAsync("pub");
        var subscription = await subscriber.SubscribeAsync(channel).WaitAsync(Timeout);
        var reconnecting = StateReached(subscriber, RelayConnectionState.Reconnecting);
        var resumed = new TaskCompletionSource<RelaySubscriptionResumedEventArgs>(TaskCreationOptions.RunContinuationsAsynchronously);
        subscription.Resumed += (_, e) => resumed.TrySetResult(e);
        for (var i = 1; i <= 3; i++)
        {
            await publisher.PublishAsync(channel, i).WaitAsync(Timeout);
        }

        Assert.Equal([1, 2, 3], (await ReadAsync(subscription, 3)).Select(m => m.GetData<int>()));
        var firstConnection = subscriber.ConnectionId;

        subscriber.AbortConnection();
        await reconnecting.WaitAsync(Timeout);
        for (var i = 4; i <= 12; i++)
        {
            await publisher.PublishAsync(channel, i).WaitAsync(Timeout);
        }

        var resume = await resumed.Task.WaitAsync(Timeout);
        for (var i = 13; i <= 15; i++)
        {
            await publisher.PublishAsync(channel, i).WaitAsync(Timeout);
        }

        var messages = await ReadAsync(subscription, 12);
        Assert.True(resume.Recovered);
        Assert.True(subscription.Recovered);
        Assert.Equal(RelayConnectionState.Connected, subscriber.State);
        Assert.NotEqual(firstConnection, subscriber.ConnectionId);
        Assert.Equal(Enumerable.Range(4, 12).Select(i => (long)i), messages.Select(m => m.Seq));
        Assert.Equal(Enumerable.Range(4, 12), messages.Select(m => m.GetData<int>()));

        // Nothing else is queued: the next message is the next seq, not a duplicate.
        await publisher.PublishAsync(channel, 16).WaitAsync(Timeout);
        Assert.Equal(16, (await ReadAsync(subscription, 1)).Single().Seq);
    }

    [Fact]
    public async Task AbortConnection_BeforeAnyMessage_RecoversMessagesPublishedWhileDisconnected()
    {
        const string channel = "chat:reconnect-empty";
        await using var subscriber = await ConnectAsync(configure: o => o.MinReconnectDelay = TimeSpan.FromSeconds(1));
        await using var publisher = await ConnectAsync();
        var subscription = await subscriber.SubscribeAsync(channel).WaitAsync(Timeout);
        var reconnecting = StateReached(subscriber, RelayConnectionState.Reconnecting);

        subscriber.AbortConnection();
        await reconnecting.WaitAsync(Timeout);
        await publisher.PublishAsync(channel, "while away").WaitAsync(Timeout);

        var message = (await ReadAsync(subscription, 1)).Single();
        Assert.Equal(1, message.Seq);
        Assert.Equal("while away", message.GetData<string>());
    }

    [Fact]
    public async Task TokenProvider_BeforeTokenExpires_RenewsInBandOnSameConnection()
    {
        var calls = 0;
        await using var client = await RelayClient.ConnectAsync(new RelayClientOptions
        {
            Endpoint = _server.RealtimeUri,
            TokenProvider = _ => ValueTask.FromResult(TestTokens.ForRootKey("renewer", Interlocked.Increment(ref calls) == 1 ? TimeSpan.FromSeconds(20) : TimeSpan.FromMinutes(5))),
        }).WaitAsync(Timeout);
        var connectionId = client.ConnectionId;
        var changes = new ConcurrentQueue<RelayConnectionState>();
        client.StateChanged += (_, e) => changes.Enqueue(e.Current);

        // Past the first token's expiry, and the server's check of it. (Tokens here live at least three whole seconds:
        // a busy machine once took over a second to connect, and a shorter token was refused at the upgrade. This one
        // lives twenty: the client renews a fifth of the remaining life before expiry, and with four seconds that left
        // ~0.7 s, which a loaded CI run once missed, its connection cut for expiry before the renewal was handled; ten
        // seconds left ~2 s, which the busiest minute of a CI run missed once more, on the Redis cluster: twenty leave ~4 s.)
        await Task.Delay(TimeSpan.FromSeconds(22));
        var ack = await client.PublishAsync("chat:renewed", "still here").WaitAsync(Timeout);

        Assert.Equal(1, ack.Seq);
        Assert.Equal("renewer", client.ClientId);
        Assert.Equal(connectionId, client.ConnectionId);
        Assert.Empty(changes);
        Assert.Equal(2, Volatile.Read(ref calls));
    }

    [Fact]
    public async Task TokenProvider_WhenServerDisconnects40142_ReconnectsWithNewTokenAndResumes()
    {
        var calls = 0;
        var shortToken = TestTokens.ForRootKey("expiring", TimeSpan.FromSeconds(4));
        await using var client = await RelayClient.ConnectAsync(new RelayClientOptions
        {
            Endpoint = _server.RealtimeUri,
            MinReconnectDelay = TimeSpan.FromMilliseconds(100),
            // The renewal gets the same token back (nothing better to send), so the server cuts the connection at expiry.
            TokenProvider = _ => ValueTask.FromResult(Interlocked.Increment(ref calls) <= 2 ? shortToken : TestTokens.ForRootKey("expiring", TimeSpan.FromMinutes(5))),
        }).WaitAsync(Timeout);
        await using var publisher = await ConnectAsync();
        var subscription = await client.SubscribeAsync("chat:expiring").WaitAsync(Timeout);
        var firstConnection = client.ConnectionId;
        var dropped = new TaskCompletionSource<Exception?>(TaskCreationOptions.RunContinuationsAsynchronously);
        client.StateChanged += (_, e) =>
        {
            if (e.Current == RelayConnectionState.Reconnecting)
            {
                dropped.TrySetResult(e.Error);
            }
        };
        var resumed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        subscription.Resumed += (_, _) => resumed.TrySetResult();

        var error = await dropped.Task.WaitAsync(Timeout);
        await resumed.Task.WaitAsync(Timeout);
        await publisher.PublishAsync("chat:expiring", "after").WaitAsync(Timeout);

        Assert.Equal(40142, Assert.IsType<RelayClientException>(error).Code);
        Assert.NotEqual(firstConnection, client.ConnectionId);
        Assert.Equal("after", (await ReadAsync(subscription, 1)).Single().GetData<string>());
        Assert.True(Volatile.Read(ref calls) >= 3);
    }

    [Fact]
    public async Task DisposeAsync_WithActiveSubscription_ClosesAndEndsReadAll()
    {
        var client = await ConnectAsync();
        var subscription = await client.SubscribeAsync("chat:dispose").WaitAsync(Timeout);

        await client.DisposeAsync().AsTask().WaitAsync(Timeout);

        Assert.Equal(RelayConnectionState.Closed, client.State);
        Assert.Empty(await ReadAsync(subscription, int.MaxValue));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => client.PublishAsync("chat:dispose", 1).WaitAsync(Timeout));
    }

    private static Task StateReached(RelayClient client, RelayConnectionState state)
    {
        var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        client.StateChanged += (_, e) =>
        {
            if (e.Current == state)
            {
                reached.TrySetResult();
            }
        };
        return reached.Task;
    }

    /// <summary>Reads up to <paramref name="count"/> messages, or until the subscription ends; fails after the timeout.</summary>
    private static async Task<List<RelayMessage>> ReadAsync(RelaySubscription subscription, int count)
    {
        using var timeout = new CancellationTokenSource(Timeout);
        var messages = new List<RelayMessage>();
        await foreach (var message in subscription.ReadAllAsync(timeout.Token).ConfigureAwait(false))
        {
            messages.Add(message);
            if (messages.Count == count)
            {
                break;
            }
        }

        return messages;
    }

    private Task<RelayClient> ConnectAsync(string? clientId = null, Action<RelayClientOptions>? configure = null, string key = RelayServer.Key)
    {
        var options = new RelayClientOptions { Endpoint = _server.RealtimeUri, Key = key, ClientId = clientId };
        configure?.Invoke(options);
        return RelayClient.ConnectAsync(options).WaitAsync(Timeout);
    }
}

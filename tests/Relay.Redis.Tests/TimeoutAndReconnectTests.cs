namespace Relay.Redis.Tests;

/// <summary>Each test owns its server: they pause it, kill it and restart it.</summary>
public class TimeoutAndReconnectTests
{
    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task CommandTimeout_FailsNamingTheCommand_AndTheConnectionRecovers(bool resp3)
    {
        await using var server = await RedisServer.StartAsync();
        var states = new List<RedisConnectionState>();
        await using var redis = await RedisConnection.ConnectAsync(server.Options(resp3, o => o.CommandTimeout = TimeSpan.FromMilliseconds(300)));
        redis.StateChanged += (_, e) =>
        {
            lock (states)
            {
                states.Add(e.State);
            }
        };
        await using var admin = await RedisConnection.ConnectAsync(server.Options());
        await redis.SetAsync("k", "v");

        // Every client's commands wait for 1.5 s: the GET cannot be answered within its 300 ms.
        await admin.ExecuteAsync("CLIENT", "PAUSE", 1500, "ALL");
        var timeout = await Assert.ThrowsAsync<TimeoutException>(() => redis.GetAsync("k"));
        Assert.Contains("GET", timeout.Message, StringComparison.Ordinal);

        // The socket is replaced; once the pause ends commands succeed again on the new one.
        await Wait.UntilAsync(async () => (await redis.GetAsync("k")).AsString() == "v", TimeSpan.FromSeconds(10), "GET to succeed after the pause");
        Assert.Equal(RedisConnectionState.Connected, redis.State);
        lock (states)
        {
            Assert.Contains(RedisConnectionState.Reconnecting, states);
            Assert.Equal(RedisConnectionState.Connected, states[^1]);
        }
    }

    [Theory(Timeout = 30_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ServerKilledAndRestarted_CommandsWaitAndSucceed_SubscriberResubscribes(bool resp3)
    {
        await using var server = await RedisServer.StartAsync();
        var reconnecting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var failedAttempts = 0;
        await using var redis = await RedisConnection.ConnectAsync(server.Options(resp3, o => o.CommandTimeout = TimeSpan.FromSeconds(8)));
        redis.StateChanged += (_, e) =>
        {
            if (e.State == RedisConnectionState.Reconnecting)
            {
                reconnecting.TrySetResult();
                if (e.Attempt > 0)
                {
                    Interlocked.Increment(ref failedAttempts);
                }
            }
        };
        await using var subscriber = await RedisSubscriber.ConnectAsync(server.Options(resp3));
        await subscriber.SubscribeAsync("news");
        await subscriber.PSubscribeAsync("alerts.*");
        Assert.Equal(1, await redis.PublishAsync("news", "before"));
        Assert.Equal("before", CommandTests.Text((await Wait.ReadAsync(subscriber)).Payload));

        server.Kill();
        await reconnecting.Task.WaitAsync(TimeSpan.FromSeconds(5));

        // Issued while the server is down: it waits for the reconnect instead of failing.
        var incr = redis.IncrAsync("counter");
        await Task.Delay(300);
        Assert.False(incr.IsCompleted);
        Assert.Equal(RedisConnectionState.Reconnecting, redis.State);

        await server.RestartAsync();
        Assert.Equal(1, await incr.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.True(Volatile.Read(ref failedAttempts) > 0, "attempts against the dead server failed and were retried");

        // The subscriber subscribed again by itself: messages published after the restart arrive.
        await Wait.UntilAsync(async () => await redis.PublishAsync("news", "after") == 1, TimeSpan.FromSeconds(10), "the subscriber to re-subscribe to news");
        var message = await Wait.ReadAsync(subscriber);
        Assert.Equal(("news", "after", (string?)null), (message.Channel, CommandTests.Text(message.Payload), message.Pattern));

        await Wait.UntilAsync(async () => await redis.PublishAsync("alerts.fire", "hot") == 1, TimeSpan.FromSeconds(10), "the subscriber to re-subscribe to alerts.*");
        message = await Wait.ReadAsync(subscriber);
        Assert.Equal(("alerts.fire", "hot", "alerts.*"), (message.Channel, CommandTests.Text(message.Payload), message.Pattern));
        Assert.Equal(RedisConnectionState.Connected, subscriber.State);
    }

    [Fact(Timeout = 20_000)]
    public async Task ServerDown_CommandTimesOutNamingTheCommand_ThenWorksAfterRestart()
    {
        await using var server = await RedisServer.StartAsync();
        var reconnecting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var redis = await RedisConnection.ConnectAsync(server.Options(configure: o => o.CommandTimeout = TimeSpan.FromMilliseconds(300)));
        redis.StateChanged += (_, e) =>
        {
            if (e.State == RedisConnectionState.Reconnecting)
            {
                reconnecting.TrySetResult();
            }
        };

        server.Kill();
        await reconnecting.Task.WaitAsync(TimeSpan.FromSeconds(5));
        var error = await Assert.ThrowsAsync<TimeoutException>(() => redis.IncrAsync("n"));
        Assert.Contains("INCR", error.Message, StringComparison.Ordinal);
        Assert.Contains("re-established", error.Message, StringComparison.Ordinal);

        await server.RestartAsync();
        await Wait.UntilAsync(async () => await redis.IncrAsync("n") == 1, TimeSpan.FromSeconds(10), "INCR after the restart");
    }

    [Fact(Timeout = 20_000)]
    public async Task CommandsInFlightWhenTheServerDies_FailWithConnectionException()
    {
        await using var server = await RedisServer.StartAsync();
        await using var redis = await RedisConnection.ConnectAsync(server.Options());
        await using var admin = await RedisConnection.ConnectAsync(server.Options());

        // Paused, the server holds the command unanswered; killed, it never answers.
        await admin.ExecuteAsync("CLIENT", "PAUSE", 5000, "ALL");
        var inFlight = redis.ExecuteAsync("GET", "k");
        await Task.Delay(200);
        server.Kill();

        var error = await Assert.ThrowsAsync<RedisConnectionException>(() => inFlight.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Contains("GET", error.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 20_000)]
    public async Task Dispose_FailsWaitingCommandsAndRefusesNewOnes()
    {
        await using var server = await RedisServer.StartAsync();
        var redis = await RedisConnection.ConnectAsync(server.Options());
        server.Kill();
        await Wait.UntilAsync(() => Task.FromResult(redis.State == RedisConnectionState.Reconnecting), TimeSpan.FromSeconds(5), "the connection to notice");
        var waiting = redis.PingAsync();

        await redis.DisposeAsync();
        Assert.Equal(RedisConnectionState.Disposed, redis.State);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Throws<ObjectDisposedException>(() => { _ = redis.ExecuteAsync("PING"); });
    }
}

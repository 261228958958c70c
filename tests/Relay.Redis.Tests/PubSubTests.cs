namespace Relay.Redis.Tests;

/// <summary>The dedicated subscriber connection: RESP2 message arrays and RESP3 push frames.</summary>
public class PubSubTests(RedisServerFixture fixture) : IClassFixture<RedisServerFixture>
{
    private static string Unique(string name) => $"{name}:{Guid.NewGuid():N}";

    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Subscribe_ReceivesChannelMessagesInOrder_AndUnsubscribeStopsThem(bool resp3)
    {
        await using var redis = await RedisConnection.ConnectAsync(fixture.Server.Options(resp3));
        await using var subscriber = await RedisSubscriber.ConnectAsync(fixture.Server.Options(resp3));
        var channel = Unique("chat");

        await subscriber.SubscribeAsync(channel);
        for (var i = 0; i < 100; i++)
        {
            Assert.Equal(1, await redis.PublishAsync(channel, $"m{i}"));
        }

        for (var i = 0; i < 100; i++)
        {
            var message = await Wait.ReadAsync(subscriber);
            Assert.Equal(channel, message.Channel);
            Assert.Equal($"m{i}", CommandTests.Text(message.Payload));
            Assert.Null(message.Pattern);
        }

        await subscriber.UnsubscribeAsync(channel);
        Assert.Equal(0, await redis.PublishAsync(channel, "after"));
    }

    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task PSubscribe_ReceivesMatchingChannelsWithThePattern(bool resp3)
    {
        await using var redis = await RedisConnection.ConnectAsync(fixture.Server.Options(resp3));
        await using var subscriber = await RedisSubscriber.ConnectAsync(fixture.Server.Options(resp3));
        var prefix = Unique("news");

        await subscriber.PSubscribeAsync(prefix + ".*");
        Assert.Equal(0, await redis.PublishAsync(prefix + "-other", "no match"));
        Assert.Equal(1, await redis.PublishAsync(prefix + ".sport", "goal"));

        var message = await Wait.ReadAsync(subscriber);
        Assert.Equal(prefix + ".sport", message.Channel);
        Assert.Equal(prefix + ".*", message.Pattern);
        Assert.Equal("goal", CommandTests.Text(message.Payload));

        await subscriber.PUnsubscribeAsync(prefix + ".*");
        Assert.Equal(0, await redis.PublishAsync(prefix + ".sport", "late"));
    }

    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ChannelAndPatternBoth_DeliverOncePerSubscription_BinarySafe(bool resp3)
    {
        await using var redis = await RedisConnection.ConnectAsync(fixture.Server.Options(resp3));
        var received = new List<RedisMessage>();
        var two = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var subscriber = await RedisSubscriber.ConnectAsync(fixture.Server.Options(resp3), m =>
        {
            lock (received)
            {
                received.Add(m);
                if (received.Count == 2)
                {
                    two.TrySetResult();
                }
            }
        });
        var channel = Unique("bin");
        await subscriber.SubscribeAsync(channel);
        await subscriber.PSubscribeAsync(channel[..8] + "*");

        var payload = Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();
        Assert.Equal(2, await redis.PublishAsync(channel, payload));
        await two.Task.WaitAsync(TimeSpan.FromSeconds(5));

        lock (received)
        {
            Assert.All(received, m => Assert.Equal(payload, m.Payload.ToArray()));
            Assert.Single(received, m => m.Pattern is null);
            Assert.Single(received, m => m.Pattern == channel[..8] + "*");
        }

        Assert.Throws<InvalidOperationException>(() => subscriber.Messages);
    }

    [Fact(Timeout = 20_000)]
    public async Task ManyChannels_AllConfirmed()
    {
        await using var redis = await RedisConnection.ConnectAsync(fixture.Server.Options());
        await using var subscriber = await RedisSubscriber.ConnectAsync(fixture.Server.Options());
        var prefix = Unique("many");

        await Task.WhenAll(Enumerable.Range(0, 300).Select(i => subscriber.SubscribeAsync($"{prefix}:{i}")));
        var numsub = await redis.ExecuteAsync("PUBSUB", "NUMSUB", $"{prefix}:0", $"{prefix}:299");
        Assert.Equal(1, numsub[1].AsInt64());
        Assert.Equal(1, numsub[3].AsInt64());
    }
}

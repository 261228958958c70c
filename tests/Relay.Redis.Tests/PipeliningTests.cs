namespace Relay.Redis.Tests;

/// <summary>Many concurrent callers on one connection: every reply reaches its own caller.</summary>
public class PipeliningTests(RedisServerFixture fixture) : IClassFixture<RedisServerFixture>
{
    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ThousandCommandsInFlight_CompleteInWriteOrder(bool resp3)
    {
        await using var redis = await RedisConnection.ConnectAsync(fixture.Server.Options(resp3));
        var key = $"pipeline:{Guid.NewGuid():N}";

        // Issued without awaiting: the i-th INCR written must get the i-th reply, i + 1.
        var replies = new Task<long>[1000];
        for (var i = 0; i < replies.Length; i++)
        {
            replies[i] = redis.IncrAsync(key);
        }

        var values = await Task.WhenAll(replies);
        Assert.Equal(Enumerable.Range(1, 1000).Select(i => (long)i), values);
    }

    [Fact(Timeout = 20_000)]
    public async Task ThousandConcurrentCallersFromManyThreads_EachGetTheirOwnReply()
    {
        await using var redis = await RedisConnection.ConnectAsync(fixture.Server.Options());
        var replies = await Task.WhenAll(Enumerable.Range(0, 1000).Select(i => Task.Run(async () =>
        {
            var payload = $"caller {i} {new string('x', i % 97)}";
            var reply = await redis.ExecuteAsync("ECHO", payload);
            return (payload, reply: reply.AsString());
        })));

        Assert.All(replies, r => Assert.Equal(r.payload, r.reply));
    }

    [Fact(Timeout = 20_000)]
    public async Task LargeValuesAmongSmallCommands_RoundTrip()
    {
        await using var redis = await RedisConnection.ConnectAsync(fixture.Server.Options());
        var key = $"large:{Guid.NewGuid():N}";
        var values = Enumerable.Range(0, 8).Select(i =>
        {
            var value = new byte[(i + 1) * 150_000];
            Random.Shared.NextBytes(value);
            return value;
        }).ToArray();

        var writes = values.Select((v, i) => redis.SetAsync($"{key}:{i}", v)).ToArray();
        var pings = Enumerable.Range(0, 100).Select(_ => redis.PingAsync()).ToArray();
        await Task.WhenAll(writes);
        await Task.WhenAll(pings);

        var reads = await Task.WhenAll(values.Select((_, i) => redis.GetAsync($"{key}:{i}")));
        for (var i = 0; i < values.Length; i++)
        {
            Assert.Equal(values[i], reads[i].Memory.ToArray());
        }
    }
}

namespace Relay.Redis.Tests;

/// <summary>EVAL, EVALSHA, SCRIPT LOAD and <see cref="RedisScript"/>'s recovery from NOSCRIPT.</summary>
public class ScriptTests(RedisServerFixture fixture) : IClassFixture<RedisServerFixture>
{
    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task EvalAndEvalSha_PassKeysAndArgs(bool resp3)
    {
        await using var redis = await RedisConnection.ConnectAsync(fixture.Server.Options(resp3));
        const string Script = "return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}";

        var reply = await redis.EvalAsync(Script, ["the-key"], ["the-arg", 41]);
        Assert.Equal("[\"the-key\", \"the-arg\", 42]", reply.ToString());

        var sha = await redis.ScriptLoadAsync(Script);
        Assert.Equal(40, sha.Length);
        Assert.Equal(reply.ToString(), (await redis.EvalShaAsync(sha, ["the-key"], ["the-arg", 41])).ToString());
    }

    [Fact(Timeout = 20_000)]
    public async Task EvalSha_UnknownScript_IsNoScript()
    {
        await using var redis = await RedisConnection.ConnectAsync(fixture.Server.Options());
        var error = await Assert.ThrowsAsync<RedisServerException>(() => redis.EvalShaAsync(new string('0', 40)));
        Assert.Equal("NOSCRIPT", error.ErrorCode);
        Assert.Equal("EVALSHA", error.Command);
    }

    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task RedisScript_RunsInCallOrder_AndRecoversAfterScriptFlush(bool resp3)
    {
        await using var redis = await RedisConnection.ConnectAsync(fixture.Server.Options(resp3));
        var key = $"script:{Guid.NewGuid():N}";
        var script = new RedisScript("return redis.call('INCRBY', KEYS[1], ARGV[1])");

        // Calls run in the order they were made, the first ones (sent whole) included: results come out 1..20 as made.
        var results = await Task.WhenAll(Enumerable.Range(0, 20).Select(_ => script.EvaluateAsync(redis, [key], [1])));
        Assert.Equal(Enumerable.Range(1, 20).Select(i => (long)i), results.Select(r => r.AsInt64()));
        Assert.Equal(1, (await redis.ExecuteAsync("SCRIPT", "EXISTS", script.Sha1))[0].AsInt64());

        // The server forgets every script: the next call sees NOSCRIPT and is sent whole.
        await redis.ExecuteAsync("SCRIPT", "FLUSH");
        Assert.Equal(21, (await script.EvaluateAsync(redis, [key], [1])).AsInt64());
        Assert.Equal(22, (await script.EvaluateAsync(redis, [key], [1])).AsInt64());
    }

    [Fact(Timeout = 20_000)]
    public async Task RedisScript_ErrorInScript_IsAServerError()
    {
        await using var redis = await RedisConnection.ConnectAsync(fixture.Server.Options());
        var script = new RedisScript("return redis.error_reply('NOPE broken on purpose')");
        var error = await Assert.ThrowsAsync<RedisServerException>(() => script.EvaluateAsync(redis));
        Assert.Equal("NOPE", error.ErrorCode);
    }
}

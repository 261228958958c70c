using System.Globalization;

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

    [Fact(Timeout = 30_000)]
    public async Task RedisScript_SharedByConnectionsToTwoServers_SendsItWholeToEach_AndKeepsCallOrderOnBoth()
    {
        // The scripts are static, so one object serves every connection a process makes: a second server (a fresh
        // process after a restart, another test's server) must never see an EVALSHA first. It once did, and the calls
        // refused with NOSCRIPT were sent again in whatever order they came back, behind calls made after them.
        await using var other = await RedisServer.StartAsync();
        await using var first = await RedisConnection.ConnectAsync(fixture.Server.Options());
        await using var second = await RedisConnection.ConnectAsync(other.Options());
        var script = new RedisScript($"-- {Guid.NewGuid()}\nreturn redis.call('RPUSH', KEYS[1], ARGV[1])");
        var key = $"order:{Guid.NewGuid():N}";

        foreach (var redis in new[] { first, second, first, second })
        {
            var before = (await redis.ExecuteAsync("LLEN", key)).AsInt64();
            var lengths = await Task.WhenAll(Enumerable.Range(0, 50).Select(i => script.EvaluateAsync(redis, [key], [i])));
            Assert.Equal(Enumerable.Range(1, 50).Select(i => before + i), lengths.Select(static r => r.AsInt64()));
        }

        foreach (var redis in new[] { first, second })
        {
            var list = await redis.ExecuteAsync("LRANGE", key, 0, -1);
            Assert.Equal(Enumerable.Range(0, 50).Concat(Enumerable.Range(0, 50)).Select(static i => i.ToString(CultureInfo.InvariantCulture)), list.Items.ToArray().Select(static v => v.AsString()));
        }
    }

    [Fact(Timeout = 30_000)]
    public async Task RedisScript_ThatKeepsCallOrder_FailsCallsRefusedWithNoScript_RatherThanRunThemLate()
    {
        await using var redis = await RedisConnection.ConnectAsync(fixture.Server.Options());
        var script = new RedisScript($"-- {Guid.NewGuid()}\nreturn redis.call('RPUSH', KEYS[1], ARGV[1])", keepsCallOrder: true);
        var key = $"order:{Guid.NewGuid():N}";
        Assert.Equal(1, (await script.EvaluateAsync(redis, [key], [0])).AsInt64());

        // The server forgets it while 50 calls are on their way: each one either ran, in call order, or failed with
        // NOSCRIPT and did not run at all.
        await redis.ExecuteAsync("SCRIPT", "FLUSH");
        var calls = Enumerable.Range(1, 50).Select(i => script.EvaluateAsync(redis, [key], [i])).ToList();
        var ran = new List<int>();
        for (var i = 0; i < calls.Count; i++)
        {
            try
            {
                await calls[i];
                ran.Add(i + 1);
            }
            catch (RedisServerException ex) when (ex.ErrorCode == "NOSCRIPT")
            {
            }
        }

        var list = await redis.ExecuteAsync("LRANGE", key, 0, -1);
        Assert.Equal(new[] { 0 }.Concat(ran).Select(static i => i.ToString(CultureInfo.InvariantCulture)), list.Items.ToArray().Select(static v => v.AsString()));
        Assert.True(ran.Count < 50, "no call was refused: the test did not flush the script in time");

        // The next call sends it whole again.
        Assert.Equal(ran.Count + 2, (await script.EvaluateAsync(redis, [key], [99])).AsInt64());
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

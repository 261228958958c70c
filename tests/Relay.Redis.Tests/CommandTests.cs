using System.Text;

namespace Relay.Redis.Tests;

/// <summary>Each typed helper against a real server, in RESP2 and RESP3.</summary>
public class CommandTests(RedisServerFixture fixture) : IClassFixture<RedisServerFixture>
{
    private Task<RedisConnection> ConnectAsync(bool resp3) => RedisConnection.ConnectAsync(fixture.Server.Options(resp3));

    private static string Key(bool resp3, string name) => $"{name}:{(resp3 ? 3 : 2)}:{Guid.NewGuid():N}";

    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Ping_AnswersPong(bool resp3)
    {
        await using var redis = await ConnectAsync(resp3);
        var rtt = await redis.PingAsync();
        Assert.True(rtt >= TimeSpan.Zero);
        Assert.Equal(RedisConnectionState.Connected, redis.State);
    }

    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task SetGet_TextBinaryMissingExpiryAndNx(bool resp3)
    {
        await using var redis = await ConnectAsync(resp3);
        var key = Key(resp3, "set");

        Assert.True(await redis.SetAsync(key, "héllo"));
        Assert.Equal("héllo", (await redis.GetAsync(key)).AsString());
        Assert.True((await redis.GetAsync(key + ":missing")).IsNull);

        byte[] binary = [0, 13, 10, 255, 42];
        Assert.True(await redis.SetAsync(key, binary));
        Assert.Equal(binary, (await redis.GetAsync(key)).Memory.ToArray());

        // NX: refused on an existing key, the value untouched; accepted on a new one.
        Assert.False(await redis.SetAsync(key, "other", onlyIfNotExists: true));
        Assert.Equal(binary, (await redis.GetAsync(key)).Memory.ToArray());
        Assert.True(await redis.SetAsync(key + ":nx", "first", onlyIfNotExists: true));

        // PX: the key is gone after its expiry; PX with NX sets a TTL.
        Assert.True(await redis.SetAsync(key + ":px", "short", TimeSpan.FromMilliseconds(1500)));
        var pttl = (await redis.ExecuteAsync("PTTL", key + ":px")).AsInt64();
        Assert.InRange(pttl, 1, 1500);
        await Wait.UntilAsync(async () => (await redis.GetAsync(key + ":px")).IsNull, TimeSpan.FromSeconds(5), "the PX key to expire");
        Assert.True(await redis.SetAsync(key + ":pxnx", "v", TimeSpan.FromSeconds(30), onlyIfNotExists: true));
        Assert.False(await redis.SetAsync(key + ":pxnx", "v", TimeSpan.FromSeconds(30), onlyIfNotExists: true));
        Assert.InRange((await redis.ExecuteAsync("PTTL", key + ":pxnx")).AsInt64(), 1, 30_000);
    }

    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Del_CountsOnlyExistingKeys(bool resp3)
    {
        await using var redis = await ConnectAsync(resp3);
        var key = Key(resp3, "del");
        await redis.SetAsync(key + ":a", "1");
        await redis.SetAsync(key + ":b", "2");

        Assert.Equal(2, await redis.DelAsync(key + ":a", key + ":b", key + ":missing"));
        Assert.True((await redis.GetAsync(key + ":a")).IsNull);
        Assert.Equal(0, await redis.DelAsync(key + ":a"));
    }

    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Expire_WholeSecondsUseExpire_FractionsUsePexpire(bool resp3)
    {
        await using var redis = await ConnectAsync(resp3);
        var key = Key(resp3, "expire");
        await redis.SetAsync(key, "v");

        Assert.True(await redis.ExpireAsync(key, TimeSpan.FromSeconds(20)));
        Assert.InRange((await redis.ExecuteAsync("TTL", key)).AsInt64(), 19, 20);

        Assert.True(await redis.ExpireAsync(key, TimeSpan.FromMilliseconds(1500)));
        Assert.InRange((await redis.ExecuteAsync("PTTL", key)).AsInt64(), 1, 1500);

        Assert.False(await redis.ExpireAsync(key + ":missing", TimeSpan.FromSeconds(1)));
    }

    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Incr_CountsAndRefusesNonIntegers(bool resp3)
    {
        await using var redis = await ConnectAsync(resp3);
        var key = Key(resp3, "incr");

        Assert.Equal(1, await redis.IncrAsync(key));
        Assert.Equal(2, await redis.IncrAsync(key));

        await redis.SetAsync(key, "not a number");
        var error = await Assert.ThrowsAsync<RedisServerException>(() => redis.IncrAsync(key));
        Assert.Equal("INCR", error.Command);
        Assert.Equal("ERR", error.ErrorCode);
        Assert.Contains("not an integer", error.Message, StringComparison.Ordinal);

        // An error reply does not disturb the connection.
        Assert.Equal("not a number", (await redis.GetAsync(key)).AsString());
    }

    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Hash_SetGetGetAllDel(bool resp3)
    {
        await using var redis = await ConnectAsync(resp3);
        var key = Key(resp3, "hash");

        Assert.Equal(1, await redis.HSetAsync(key, "a", "1"));
        Assert.Equal(0, await redis.HSetAsync(key, "a", "one"));
        Assert.Equal(2, await redis.HSetAsync(key, new KeyValuePair<string, RedisArg>("b", 2), new KeyValuePair<string, RedisArg>("c", new byte[] { 0, 1 })));

        Assert.Equal("one", (await redis.HGetAsync(key, "a")).AsString());
        Assert.True((await redis.HGetAsync(key, "zzz")).IsNull);

        var all = await redis.HGetAllAsync(key);
        Assert.Equal(3, all.Count);
        Assert.Equal("one", all["a"].AsString());
        Assert.Equal(2, all["b"].AsInt64());
        Assert.Equal([0, 1], all["c"].Memory.ToArray());

        Assert.Equal(2, await redis.HDelAsync(key, "a", "b", "zzz"));
        Assert.Single(await redis.HGetAllAsync(key));
        Assert.Empty(await redis.HGetAllAsync(key + ":missing"));
    }

    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task SortedSet_AddRangeByScoreRemoveRangeByScore(bool resp3)
    {
        await using var redis = await ConnectAsync(resp3);
        var key = Key(resp3, "zset");

        Assert.Equal(1, await redis.ZAddAsync(key, 1, "a"));
        Assert.Equal(1, await redis.ZAddAsync(key, 2.5, "b"));
        Assert.Equal(1, await redis.ZAddAsync(key, 3, "c"));
        Assert.Equal(1, await redis.ZAddAsync(key, double.PositiveInfinity, "z"));
        Assert.Equal(0, await redis.ZAddAsync(key, 4, "c"));

        Assert.Equal(["b", "c", "z"], Strings(await redis.ZRangeByScoreAsync(key, 2, double.PositiveInfinity)));
        Assert.Equal(["a", "b", "c", "z"], Strings(await redis.ZRangeByScoreAsync(key, double.NegativeInfinity, double.PositiveInfinity)));
        Assert.Equal(["b", "c"], Strings(await redis.ZRangeByScoreAsync(key, double.NegativeInfinity, double.PositiveInfinity, skip: 1, take: 2)));
        Assert.Equal(["c", "z"], Strings(await redis.ZRangeByScoreAsync(key, 0, double.PositiveInfinity, skip: 2)));

        Assert.Equal(2, await redis.ZRemRangeByScoreAsync(key, double.NegativeInfinity, 2.5));
        Assert.Equal(["c", "z"], Strings(await redis.ZRangeByScoreAsync(key, double.NegativeInfinity, double.PositiveInfinity)));
    }

    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Stream_AddRangeAndApproximateTrim(bool resp3)
    {
        await using var redis = await ConnectAsync(resp3);
        var key = Key(resp3, "stream");

        var ids = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            ids.Add(await redis.XAddAsync(key, [new("n", i), new("data", $"payload {i}"), new("n", "again")]));
        }

        var entries = await redis.XRangeAsync(key);
        Assert.Equal(ids, entries.Select(e => e.Id));
        Assert.Equal(3, entries[2].Fields.Count);
        Assert.Equal("n", entries[2].Fields[0].Key);
        Assert.Equal(2, entries[2].Fields[0].Value.AsInt64());
        Assert.Equal("payload 2", entries[2].Fields[1].Value.AsString());

        Assert.Equal(ids[1..3], (await redis.XRangeAsync(key, ids[1], "+", count: 2)).Select(e => e.Id));
        Assert.Equal("9-1", await redis.XAddAsync(key + ":explicit", [new("f", "v")], id: "9-1"));

        // MAXLEN ~ trims whole radix-tree nodes (100 entries by default): fewer than added, never below the bound.
        for (var i = 0; i < 300; i++)
        {
            await redis.XAddAsync(key + ":trim", [new("i", i)], maxLength: 10);
        }

        Assert.InRange((await redis.ExecuteAsync("XLEN", key + ":trim")).AsInt64(), 10, 299);
    }

    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Publish_WithoutSubscribers_ReachesNone(bool resp3)
    {
        await using var redis = await ConnectAsync(resp3);
        Assert.Equal(0, await redis.PublishAsync(Key(resp3, "nobody"), "hello"));
    }

    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Execute_RawCommands_ReturnTheirReplies(bool resp3)
    {
        await using var redis = await ConnectAsync(resp3);
        Assert.Equal("echo me", (await redis.ExecuteAsync("ECHO", "echo me")).AsString());
        var unknown = await Assert.ThrowsAsync<RedisServerException>(() => redis.ExecuteAsync("NOSUCHCOMMAND"));
        Assert.Contains("unknown command", unknown.ServerMessage, StringComparison.Ordinal);
        var info = await redis.ExecuteAsync("HELLO");
        Assert.Equal(resp3 ? RespType.Map : RespType.Array, info.Type);
    }

    [Fact(Timeout = 20_000)]
    public async Task Resp3_EveryTypeFromTheRealServer_Parses()
    {
        // DEBUG PROTOCOL makes redis-server reply with each RESP3 type.
        await using var redis = await ConnectAsync(resp3: true);
        async Task<RedisValue> Debug(string type) => await redis.ExecuteAsync("DEBUG", "PROTOCOL", type);

        Assert.Equal(RespType.BulkString, (await Debug("string")).Type);
        Assert.Equal(RespType.Integer, (await Debug("integer")).Type);
        Assert.Equal(3.141, (await Debug("double")).AsDouble());
        Assert.Equal(RespType.BigNumber, (await Debug("bignum")).Type);
        Assert.Equal("1234567999999999999999999999999999999", (await Debug("bignum")).AsString());
        Assert.True((await Debug("null")).IsNull);
        Assert.Equal(RespType.Array, (await Debug("array")).Type);
        Assert.Equal(RespType.Set, (await Debug("set")).Type);
        Assert.Equal(RespType.Map, (await Debug("map")).Type);
        Assert.True((await Debug("true")).AsBoolean());
        Assert.False((await Debug("false")).AsBoolean());
        var verbatim = await Debug("verbatim");
        Assert.Equal(RespType.VerbatimString, verbatim.Type);
        Assert.Equal("txt", verbatim.VerbatimFormat);

        // An attribute is dropped and the value it annotates kept.
        Assert.Equal("Some real reply following the attribute", (await Debug("attrib")).AsString());

        // A push on the command connection is not taken for the reply that follows it.
        Assert.Equal("Some real reply following the push reply", (await Debug("push")).AsString());
        Assert.Equal("still in step", (await redis.ExecuteAsync("ECHO", "still in step")).AsString());
    }

    private static string[] Strings(RedisValue[] values) => [.. values.Select(v => v.AsString()!)];

    internal static string Text(ReadOnlyMemory<byte> bytes) => Encoding.UTF8.GetString(bytes.Span);
}

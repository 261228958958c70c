using System.Globalization;
using System.Text;
using Relay.Bus.Routing;
using Relay.Testing;

namespace Relay.Bus.Redis.Tests;

/// <summary><see cref="RedisChannelLog"/> against a real redis-server.</summary>
public class RedisChannelLogTests(RedisServerFixture fixture) : IClassFixture<RedisServerFixture>
{
    private static readonly TimeSpan s_long = TimeSpan.FromMinutes(5);

    private static string NewChannel() => $"ch-{Guid.NewGuid():N}";

    private static byte[] Bytes(string text) => Encoding.UTF8.GetBytes(text);

    private static string Text(ChannelLogMessage message) => Encoding.UTF8.GetString(message.Payload.Span);

    [Fact(Timeout = 60_000)]
    public async Task ConcurrentAppends_FromFourConnections_AreGapless()
    {
        var connections = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => fixture.Server.ConnectAsync()));
        try
        {
            var logs = connections.Select(c => new RedisChannelLog(c.GetDatabase())).ToArray();
            var channel = NewChannel();
            const int Count = 200;

            var results = await Task.WhenAll(Enumerable.Range(0, Count).Select(i =>
                logs[i % logs.Length].AppendAsync("app", channel, $"id-{i}", Bytes($"m{i}"), 500, s_long, s_long)));

            Assert.All(results, r => Assert.False(r.Duplicate));
            Assert.Single(results.Select(r => r.Epoch).Distinct());
            Assert.Equal(Enumerable.Range(1, Count).Select(i => (long)i), results.Select(r => r.Seq).Order());

            var position = await logs[0].PositionAsync("app", channel);
            Assert.Equal(new ChannelLogPosition(results[0].Epoch, Count), position);

            // The history holds every message once, in seq order, each with the payload its append gave.
            var read = await logs[1].ReadAfterAsync("app", channel, 0, 1000);
            Assert.True(read.Complete);
            Assert.Equal(Enumerable.Range(1, Count).Select(i => (long)i), read.Messages.Select(m => m.Seq));
            var payloadBySeq = results.Select((r, i) => (r.Seq, Payload: $"m{i}")).ToDictionary(x => x.Seq, x => x.Payload);
            Assert.All(read.Messages, m => Assert.Equal(payloadBySeq[m.Seq], Text(m)));
        }
        finally
        {
            foreach (var connection in connections)
            {
                await connection.DisposeAsync();
            }
        }
    }

    [Fact(Timeout = 30_000)]
    public async Task Dedupe_ReturnsFirstSeqWithinWindow_AndAppendsAgainAfterIt()
    {
        await using var connection = await fixture.Server.ConnectAsync();
        var redis = connection.GetDatabase();
        var log = new RedisChannelLog(redis);
        var channel = NewChannel();
        var window = TimeSpan.FromSeconds(1);

        // Warm up first, so the three appends below land well within the window on a loaded machine.
        await log.AppendAsync("app", NewChannel(), "warm-up", Bytes("x"), 100, s_long, window);
        var first = await log.AppendAsync("app", channel, "dup", Bytes("one"), 100, s_long, window);
        var other = await log.AppendAsync("app", channel, "other", Bytes("two"), 100, s_long, window);
        var again = await log.AppendAsync("app", channel, "dup", Bytes("one-again"), 100, s_long, window);

        Assert.Equal(new ChannelAppendResult(1, first.Epoch, false), first);
        Assert.Equal(new ChannelAppendResult(2, first.Epoch, false), other);
        Assert.Equal(new ChannelAppendResult(1, first.Epoch, true), again);
        Assert.Equal(2, (await log.PositionAsync("app", channel)).Seq);

        // The same id on another channel is not a duplicate.
        var elsewhere = await log.AppendAsync("app", NewChannel(), "dup", Bytes("x"), 100, s_long, window);
        Assert.False(elsewhere.Duplicate);

        await Task.Delay(window + TimeSpan.FromMilliseconds(300));
        var later = await log.AppendAsync("app", channel, "dup", Bytes("one-later"), 100, s_long, window);
        Assert.Equal(new ChannelAppendResult(3, first.Epoch, false), later);

        var read = await log.ReadAfterAsync("app", channel, 0, 10);
        Assert.Equal(["one", "two", "one-later"], read.Messages.Select(Text));
    }

    // A sender's attempt is stored at most once, whoever holds the shard: a copy it gave up on and sent again, reaching a
    // later owner (a higher fence) after the first was stored, gets the seq it stored (so a resend whose answer was lost is
    // answered), or is refused as handled before when no record of it is left, and is neither appended nor published again.
    [Fact(Timeout = 30_000)]
    public async Task OriginMarks_StoreEachSendersNumberOnce_WhicheverOwnerGetsIt()
    {
        await using var connection = await fixture.Server.ConnectAsync();
        var log = new RedisChannelLog(connection.GetDatabase());
        var channel = NewChannel();
        var fanOut = "fan-" + channel;
        var published = new List<string>();
        var subscription = await connection.GetSubscriber().SubscribeAsync(StackExchange.Redis.RedisChannel.Literal(fanOut));
        subscription.OnMessage(m =>
        {
            lock (published)
            {
                published.Add(m.Message!);
            }
        });

        int PublishedCount()
        {
            lock (published)
            {
                return published.Count;
            }
        }

        Task<ChannelAppendResult?> Append(string text, string fence, PublishOrigin? origin, int item = 0) =>
            log.AppendAndPublishAsync("app", channel, null, Bytes(text), 100, s_long, s_long, fanOut, fence, origin, item);

        var one = (await Append("a", "100", new("sender-1", 5)))!.Value;
        Assert.Equal(new ChannelAppendResult(1, one.Epoch, false), one);

        // The same number again under a later owner: the first seq, nothing appended.
        Assert.Equal(new ChannelAppendResult(1, one.Epoch, true), await Append("a-again", "200", new("sender-1", 5)));

        // An earlier number of the same sender, never stored here, turning up now: handled before (no seq to answer), nothing appended.
        Assert.Equal(new ChannelAppendResult(0, one.Epoch, false, HandledBefore: true), await Append("older", "200", new("sender-1", 4)));

        // A two-message publish: each item once; either item again (its first answer lost) is answered with its seq.
        Assert.Equal(2, (await Append("b0", "200", new("sender-1", 6), item: 0))!.Value.Seq);
        Assert.Equal(3, (await Append("b1", "200", new("sender-1", 6), item: 1))!.Value.Seq);
        Assert.Equal(new ChannelAppendResult(2, one.Epoch, true), await Append("b0-again", "300", new("sender-1", 6), item: 0));
        Assert.Equal(new ChannelAppendResult(3, one.Epoch, true), await Append("b1-again", "300", new("sender-1", 6), item: 1));

        // An earlier number than the sender's last, stored before: its seq too.
        Assert.Equal(new ChannelAppendResult(1, one.Epoch, true), await Append("a-once-more", "300", new("sender-1", 5)));

        // Another sender's numbers are its own, and a publish without an origin is always appended.
        Assert.Equal(4, (await Append("c", "300", new("sender-2", 1)))!.Value.Seq);
        Assert.Equal(5, (await Append("d", "300", origin: null))!.Value.Seq);
        Assert.Equal(6, (await Append("d", "300", origin: null))!.Value.Seq);

        // The former owner (a lower fence) is still fenced out, origin or not.
        Assert.Null(await Append("late", "100", new("sender-1", 7)));

        // Numbers below the sender's floor (answered, nobody waits for them) are forgotten: handled before, no seq.
        Assert.Equal(7, (await Append("e", "300", new("sender-1", 7) { Floor = 7 }))!.Value.Seq);
        Assert.Equal(new ChannelAppendResult(0, one.Epoch, false, HandledBefore: true), await Append("b0-late", "300", new("sender-1", 6), item: 0));

        var read = await log.ReadAfterAsync("app", channel, 0, 100);
        Assert.Equal(["a", "b0", "b1", "c", "d", "d", "e"], read.Messages.Select(Text));
        for (var waited = 0; waited < 50 && PublishedCount() < 7; waited++)
        {
            await Task.Delay(100);
        }

        await Task.Delay(200);
        lock (published)
        {
            Assert.Equal(7, published.Count);
        }
    }

    // Marks are one hash field per sender in the channel's pos hash; once it has more than 32 fields, a new sender's
    // first append drops marks untouched for ten minutes (senders that went away), keeping the rest.
    [Fact(Timeout = 30_000)]
    public async Task OriginMarks_OfSendersGoneTenMinutes_AreDroppedWhenANewSenderArrives()
    {
        await using var connection = await fixture.Server.ConnectAsync();
        var redis = connection.GetDatabase();
        var log = new RedisChannelLog(redis);
        var channel = NewChannel();
        var first = await log.AppendAndPublishAsync("app", channel, null, Bytes("x"), 100, s_long, s_long, "fan", "1", new("recent", 1));
        var pos = RedisKeys.Position(RedisChannelLog.KeyPrefix("app", channel));
        var longAgo = DateTimeOffset.UtcNow.AddMinutes(-11).ToUnixTimeMilliseconds();
        for (var i = 0; i < 40; i++)
        {
            await redis.HashSetAsync(pos, $"o:gone-{i}", $"1:0:1:{longAgo}");
        }

        await log.AppendAndPublishAsync("app", channel, null, Bytes("y"), 100, s_long, s_long, "fan", "1", new("newcomer", 1));

        var fields = (await redis.HashKeysAsync(pos)).Select(f => (string)f!).Where(f => f.StartsWith("o:", StringComparison.Ordinal)).Order().ToList();
        Assert.Equal(["o:newcomer", "o:recent"], fields);
        Assert.True(first!.Value.Seq == 1);

        // The sender whose mark stayed still has its number remembered.
        Assert.True((await log.AppendAndPublishAsync("app", channel, null, Bytes("x"), 100, s_long, s_long, "fan", "1", new("recent", 1)))!.Value.Duplicate);
    }

    [Fact(Timeout = 30_000)]
    public async Task History_IsTrimmedBySize()
    {
        await using var connection = await fixture.Server.ConnectAsync();
        var redis = connection.GetDatabase();
        var log = new RedisChannelLog(redis);
        var channel = NewChannel();

        for (var i = 1; i <= 10; i++)
        {
            await log.AppendAsync("app", channel, null, Bytes($"m{i}"), 3, s_long, s_long);
        }

        var last = await log.ReadLastAsync("app", channel, 100);
        Assert.Equal([8L, 9L, 10L], last.Messages.Select(m => m.Seq));
        Assert.Equal(["m8", "m9", "m10"], last.Messages.Select(Text));
        Assert.Equal(10, last.Seq);

        var lastTwo = await log.ReadLastAsync("app", channel, 2);
        Assert.Equal([9L, 10L], lastTwo.Messages.Select(m => m.Seq));

        // Reading from a seq the history still reaches is complete; from one it no longer reaches is not.
        var fromSeven = await log.ReadAfterAsync("app", channel, 7, 100);
        Assert.True(fromSeven.Complete);
        Assert.Equal([8L, 9L, 10L], fromSeven.Messages.Select(m => m.Seq));

        var fromTwo = await log.ReadAfterAsync("app", channel, 2, 100);
        Assert.False(fromTwo.Complete);
        Assert.Equal([8L, 9L, 10L], fromTwo.Messages.Select(m => m.Seq));
    }

    [Fact(Timeout = 30_000)]
    public async Task BackwardReads_WithAByteBudget_KeepTheNewestThatFit_AndSaySo()
    {
        await using var connection = await fixture.Server.ConnectAsync();
        var redis = connection.GetDatabase();
        var log = new RedisChannelLog(redis);
        var channel = NewChannel();

        // 150 messages of 1,000 bytes: more than one of the script's steps of 64.
        for (var i = 1; i <= 150; i++)
        {
            await log.AppendAsync("app", channel, null, Bytes(i.ToString("D4", CultureInfo.InvariantCulture) + new string('x', 996)), 1000, s_long, s_long);
        }

        // A stored member is the payload and its "seq:time:expiry:" prefix, so 100,000 bytes hold 99 of them at most.
        var last = await log.ReadLastAsync("app", channel, 1000, maxBytes: 100_000);
        Assert.True(last.Truncated);
        Assert.InRange(last.Messages.Count, 90, 99);
        Assert.Equal(Enumerable.Range(151 - last.Messages.Count, last.Messages.Count).Select(static i => (long)i), last.Messages.Select(static m => m.Seq));

        // The next page goes on below it; the last one is complete.
        var before = await log.ReadBeforeAsync("app", channel, last.Messages[0].Seq, 1000, maxBytes: 100_000);
        Assert.False(before.Truncated);
        Assert.Equal(Enumerable.Range(1, 150 - last.Messages.Count).Select(static i => (long)i), before.Messages.Select(static m => m.Seq));

        // A budget smaller than one message still returns the newest one, and the limit still applies.
        var one = await log.ReadBeforeAsync("app", channel, 100, 1000, maxBytes: 10);
        Assert.True(one.Truncated);
        Assert.Equal([99L], one.Messages.Select(static m => m.Seq));
        var limited = await log.ReadLastAsync("app", channel, 5, maxBytes: 100_000);
        Assert.False(limited.Truncated);
        Assert.Equal([146L, 147L, 148L, 149L, 150L], limited.Messages.Select(static m => m.Seq));
        var whole = await log.ReadLastAsync("app", channel, 1000);
        Assert.Equal((false, 150), (whole.Truncated, whole.Messages.Count));
    }

    [Fact(Timeout = 30_000)]
    public async Task History_IsTrimmedByAge()
    {
        await using var connection = await fixture.Server.ConnectAsync();
        var redis = connection.GetDatabase();
        var log = new RedisChannelLog(redis);
        var channel = NewChannel();
        var ttl = TimeSpan.FromSeconds(1);

        // Warm up (scripts loaded, code jitted) on another channel, so the two appends below land well within the TTL
        // even on a loaded machine (CI once took over 300 ms between them).
        await log.AppendAsync("app", NewChannel(), null, Bytes("warm-up"), 100, ttl, s_long);
        await log.AppendAsync("app", channel, null, Bytes("old-1"), 100, ttl, s_long);
        await log.AppendAsync("app", channel, null, Bytes("old-2"), 100, ttl, s_long);
        Assert.Equal(2, (await log.ReadLastAsync("app", channel, 10)).Messages.Count);

        await Task.Delay(ttl + TimeSpan.FromMilliseconds(300));

        // A read alone trims what aged out.
        var afterAge = await log.ReadAfterAsync("app", channel, 0, 10);
        Assert.Empty(afterAge.Messages);
        Assert.False(afterAge.Complete);
        Assert.Equal(2, afterAge.Seq);

        var fresh = await log.AppendAsync("app", channel, null, Bytes("new"), 100, ttl, s_long);
        Assert.Equal(3, fresh.Seq);
        var read = await log.ReadAfterAsync("app", channel, 0, 10);
        Assert.False(read.Complete);
        Assert.Equal(["new"], read.Messages.Select(Text));
        Assert.True((await log.ReadAfterAsync("app", channel, 2, 10)).Complete);
        Assert.Equal(1, (long)await redis.ExecuteAsync("ZCARD", RedisChannelLog.KeyPrefix("app", channel) + "log"));
    }

    [Fact(Timeout = 30_000)]
    public async Task ReadAfter_ReturnsExactlyTheMissedMessages_InOrder()
    {
        await using var connection = await fixture.Server.ConnectAsync();
        var redis = connection.GetDatabase();
        var log = new RedisChannelLog(redis);
        var channel = NewChannel();
        for (var i = 1; i <= 20; i++)
        {
            await log.AppendAsync("app", channel, null, Bytes($"m{i}"), 100, s_long, s_long);
        }

        var missed = await log.ReadAfterAsync("app", channel, 12, 100);
        Assert.True(missed.Complete);
        Assert.Equal(Enumerable.Range(13, 8).Select(i => $"m{i}"), missed.Messages.Select(Text));
        Assert.Equal(Enumerable.Range(13, 8).Select(i => (long)i), missed.Messages.Select(m => m.Seq));

        // A limit returns the oldest missed first, so a reader can page forward.
        var page = await log.ReadAfterAsync("app", channel, 12, 3);
        Assert.True(page.Complete);
        Assert.Equal([13L, 14L, 15L], page.Messages.Select(m => m.Seq));

        var upToDate = await log.ReadAfterAsync("app", channel, 20, 100);
        Assert.True(upToDate.Complete);
        Assert.Empty(upToDate.Messages);

        // Binary payloads (with the separator byte and zeros) come back unchanged.
        byte[] binary = [0, (byte)':', 255, 10, 13, 0];
        await log.AppendAsync("app", channel, null, binary, 100, s_long, s_long);
        var last = await log.ReadLastAsync("app", channel, 1);
        Assert.Equal(binary, last.Messages.Single().Payload.ToArray());
    }

    [Fact(Timeout = 30_000)]
    public async Task DataLoss_StartsANewEpochAtSeqOne()
    {
        // Its own server: FLUSHALL must not disturb the other tests.
        await using var server = await RedisServer.StartAsync();
        await using var connection = await server.ConnectAsync();
        var redis = connection.GetDatabase();
        var log = new RedisChannelLog(redis);
        var channel = NewChannel();

        var before = await log.AppendAsync("app", channel, "a", Bytes("m1"), 100, s_long, s_long);
        await log.AppendAsync("app", channel, "b", Bytes("m2"), 100, s_long, s_long);

        await redis.ExecuteAsync("FLUSHALL");

        var after = await log.AppendAsync("app", channel, "a", Bytes("again"), 100, s_long, s_long);
        Assert.NotEqual(before.Epoch, after.Epoch);
        Assert.Equal(1, after.Seq);
        Assert.False(after.Duplicate);
        Assert.Equal(new ChannelLogPosition(after.Epoch, 1), await log.PositionAsync("app", channel));

        // Only the id record survives (partial eviction): it belongs to another epoch and is ignored.
        var prefix = RedisChannelLog.KeyPrefix("app", channel);
        await redis.ExecuteAsync("DEL", prefix + "pos", prefix + "log");
        var third = await log.AppendAsync("app", channel, "a", Bytes("third"), 100, s_long, s_long);
        Assert.NotEqual(after.Epoch, third.Epoch);
        Assert.Equal(new ChannelAppendResult(1, third.Epoch, false), third);

        // A read of a lost channel also gets a new epoch, which the next append keeps.
        await redis.ExecuteAsync("FLUSHALL");
        var position = await log.PositionAsync("app", channel);
        Assert.Equal(0, position.Seq);
        Assert.NotEqual(third.Epoch, position.Epoch);
        var next = await log.AppendAsync("app", channel, null, Bytes("x"), 100, s_long, s_long);
        Assert.Equal(new ChannelAppendResult(1, position.Epoch, false), next);
    }

    [Fact(Timeout = 30_000)]
    public async Task Channels_AreIndependent()
    {
        await using var connection = await fixture.Server.ConnectAsync();
        var redis = connection.GetDatabase();
        var log = new RedisChannelLog(redis);
        var a = NewChannel();
        var b = NewChannel();

        var a1 = await log.AppendAsync("app", a, "same-id", Bytes("a1"), 100, s_long, s_long);
        var b1 = await log.AppendAsync("app", b, "same-id", Bytes("b1"), 100, s_long, s_long);
        var a2 = await log.AppendAsync("app", a, null, Bytes("a2"), 100, s_long, s_long);
        var otherApp = await log.AppendAsync("other", a, null, Bytes("o1"), 100, s_long, s_long);

        Assert.Equal((1L, false), (a1.Seq, a1.Duplicate));
        Assert.Equal((1L, false), (b1.Seq, b1.Duplicate));
        Assert.Equal(2, a2.Seq);
        Assert.Equal(1, otherApp.Seq);
        Assert.NotEqual(a1.Epoch, b1.Epoch);
        Assert.NotEqual(a1.Epoch, otherApp.Epoch);

        Assert.Equal(["a1", "a2"], (await log.ReadAfterAsync("app", a, 0, 10)).Messages.Select(Text));
        Assert.Equal(["b1"], (await log.ReadAfterAsync("app", b, 0, 10)).Messages.Select(Text));
        Assert.Equal(["o1"], (await log.ReadAfterAsync("other", a, 0, 10)).Messages.Select(Text));

        // The key scheme is unambiguous when names contain the separator.
        Assert.NotEqual(RedisChannelLog.KeyPrefix("a:b", "c"), RedisChannelLog.KeyPrefix("a", "b:c"));
        var x = await log.AppendAsync("a:b", "c", null, Bytes("x"), 100, s_long, s_long);
        var y = await log.AppendAsync("a", "b:c", null, Bytes("y"), 100, s_long, s_long);
        Assert.Equal(1, x.Seq);
        Assert.Equal(1, y.Seq);
    }
}

using System.Text;
using Relay.Testing;
using StackExchange.Redis;

namespace Relay.Bus.Redis.Tests;

/// <summary>
/// Appends run in the order they were made, also when the server forgot the scripts (SCRIPT FLUSH, a restart): a call
/// refused with NOSCRIPT fails without running rather than being sent again behind calls made after it, as
/// StackExchange.Redis's own <c>ScriptEvaluateAsync(string)</c> does.
/// </summary>
public class RedisLuaScriptTests(RedisServerFixture fixture) : IClassFixture<RedisServerFixture>
{
    private static readonly TimeSpan s_long = TimeSpan.FromMinutes(5);

    [Fact(Timeout = 30_000)]
    public async Task Appends_AcrossScriptFlush_RanInCallOrderOrFailedWithoutRunning()
    {
        await using var connection = await fixture.Server.ConnectAsync();
        var log = new RedisChannelLog(connection.GetDatabase());
        var channel = $"order-{Guid.NewGuid():N}";
        Assert.Equal(1, (await log.AppendAsync("app", channel, null, "0"u8.ToArray(), 1000, s_long, s_long)).Seq);

        // The server forgets every script; 50 appends are on their way before any reply comes back.
        await connection.GetServer(connection.GetEndPoints()[0]).ScriptFlushAsync();
        var ran = await AppendInFlightAsync(log, channel, 50);

        Assert.True(ran.Count < 50, "no append was refused: the flush did not reach the server before them");
        await AssertLogIsAsync(log, channel, [0, .. ran]);

        // The scripts were loaded again: the next append runs.
        Assert.Equal(ran.Count + 2, (await log.AppendAsync("app", channel, null, "99"u8.ToArray(), 1000, s_long, s_long)).Seq);
    }

    [Fact(Timeout = 60_000)]
    public async Task Appends_RightAfterARedisRestart_RanInCallOrderOrFailedWithoutRunning()
    {
        // Its own server: the restart must not disturb the other tests.
        await using var server = await RedisServer.StartAsync();
        await using var connection = await server.ConnectAsync();
        var log = new RedisChannelLog(connection.GetDatabase());
        var channel = $"order-{Guid.NewGuid():N}";

        // On a fresh server (scripts loaded at connect), appends in flight run in call order.
        var first = await AppendInFlightAsync(log, channel, 50);
        Assert.Equal(Enumerable.Range(1, 50), first);

        // Restarted empty: no scripts, a new epoch. Appends made while the client reconnects either run in call order
        // or fail without running.
        await server.RestartAsync();
        var ran = new List<int>();
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (ran.Count == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "no append ran within 30 s of the restart");
            ran = await AppendInFlightAsync(log, channel, 50, first: 1000 + ran.Count);
        }

        var read = await log.ReadLastAsync("app", channel, 1000);
        var payloads = read.Messages.Select(static m => int.Parse(Encoding.UTF8.GetString(m.Payload.Span), System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(ran, payloads);
        Assert.Equal(Enumerable.Range(1, ran.Count).Select(static i => (long)i), read.Messages.Select(static m => m.Seq));
    }

    // Makes `count` appends (payloads first, first+1, …) before awaiting any; returns the payloads of those that ran, in
    // call order, after checking their seqs rise in that order. A failure must be NOSCRIPT or the connection being down.
    private static async Task<List<int>> AppendInFlightAsync(RedisChannelLog log, string channel, int count, int first = 1)
    {
        var calls = Enumerable.Range(first, count)
            .Select(i => (Payload: i, Append: log.AppendAsync("app", channel, null, Encoding.UTF8.GetBytes(i.ToString(System.Globalization.CultureInfo.InvariantCulture)), 1000, s_long, s_long)))
            .ToList();
        var ran = new List<int>();
        long lastSeq = 0;
        foreach (var (payload, append) in calls)
        {
            try
            {
                var result = await append.WaitAsync(TimeSpan.FromSeconds(20));
                Assert.True(result.Seq > lastSeq, $"append {payload} got seq {result.Seq} after seq {lastSeq}");
                lastSeq = result.Seq;
                ran.Add(payload);
            }
            catch (RedisServerException e) when (RedisLuaScript.IsNoScript(e))
            {
            }
            catch (RedisConnectionException)
            {
            }
        }

        return ran;
    }

    private static async Task AssertLogIsAsync(RedisChannelLog log, string channel, IEnumerable<int> payloads)
    {
        var read = await log.ReadLastAsync("app", channel, 1000);
        Assert.Equal(payloads, read.Messages.Select(static m => int.Parse(Encoding.UTF8.GetString(m.Payload.Span), System.Globalization.CultureInfo.InvariantCulture)));
        Assert.Equal(Enumerable.Range(1, read.Messages.Count).Select(static i => (long)i), read.Messages.Select(static m => m.Seq));
    }
}

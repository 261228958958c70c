using System.Text;
using Relay.Bus.Redis;
using Relay.Testing;
using StackExchange.Redis;

namespace Relay.Services.Tests.Distributed;

/// <summary>
/// The channel log's scripts while the channel's slot moves between masters with its keys split: <c>pos</c> still on
/// the old master, <c>log</c> already on the new one (a move takes a slot's keys some at a time). Redis answers such a
/// script <c>TRYAGAIN</c> and runs nothing; reads (and every script that may run again in any order) are tried again
/// until the move is done, appends fail at once (50300 to the publisher, who publishes again with the same id).
/// </summary>
public sealed class ChannelLogSlotMoveRedisClusterTests
{
    private const string App = "app";
    private const string Channel = "moving";

    // How long the test keeps the channel's keys split before finishing the move: well inside the retries' second.
    private static readonly TimeSpan s_split = TimeSpan.FromMilliseconds(300);

    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(10);

    [Fact(Timeout = 60_000)]
    public async Task AReadWhileTheChannelsKeysAreSplitBetweenMasters_IsAnsweredOnceTheMoveEnds_AnAppendIsRefused()
    {
        await using var cluster = await RedisClusterSet.StartAsync();
        await using var multiplexer = (ConnectionMultiplexer)await cluster.ConnectAsync();
        var log = new RedisChannelLog(multiplexer.GetDatabase());
        for (var n = 1; n <= 3; n++)
        {
            await log.AppendAsync(App, Channel, id: null, Encoding.UTF8.GetBytes(n.ToString(System.Globalization.CultureInfo.InvariantCulture)), 100, TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(2)).WaitAsync(s_wait);
        }

        var prefix = RedisKeys.ChannelPrefix(App, Channel);
        var masters = await cluster.MastersAsync();
        var from = await cluster.MasterOfAsync(RedisKeys.Position(prefix).ToString());
        var move = await cluster.BeginSlotMoveAsync(RedisKeys.Position(prefix).ToString(), masters.First(m => m != from));
        await cluster.MigrateAsync(move, RedisKeys.Log(prefix).ToString());

        // Split: an append now is refused at once (it keeps call order, so it is not tried again later).
        var refused = await Assert.ThrowsAsync<RedisServerException>(() => log.AppendAsync(App, Channel, id: null, Encoding.UTF8.GetBytes("4"), 100, TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(2)).WaitAsync(s_wait));
        Assert.StartsWith("TRYAGAIN", refused.Message, StringComparison.Ordinal);

        // A read made while split is answered once the move ends.
        var reading = log.ReadLastAsync(App, Channel, 10);
        await Task.Delay(s_split);
        Assert.False(reading.IsCompleted, $"the read ended while the channel's keys were split: {reading.Exception?.InnerException?.Message ?? "answered"}");
        await cluster.MigrateAsync(move, RedisKeys.Position(prefix).ToString());
        await cluster.FinishSlotMoveAsync(move);
        var read = await reading.WaitAsync(s_wait);
        Assert.Equal([1L, 2L, 3L], read.Messages.Select(static m => m.Seq));
        Assert.Equal(3, read.Seq);

        // And the channel goes on on its new master, in the same epoch.
        var next = await log.AppendAsync(App, Channel, id: null, Encoding.UTF8.GetBytes("4"), 100, TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(2)).WaitAsync(s_wait);
        Assert.Equal(4, next.Seq);
        Assert.Equal(read.Epoch, next.Epoch);
    }
}

using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.DependencyInjection;
using Relay.Bus.Sessions;

namespace Relay.Bus.Redis.Tests;

/// <summary>
/// <see cref="RedisWillStore"/> over one redis-server, each "node" its own service provider (its own node id) with
/// Relay:Redis:NodeTtl 0.5 s: a node that stops beating has its wills taken once, by one of the nodes that beat; a will
/// replaced by a later connection of its client id is not; a delayed one is cancelled by such a connection until due.
/// </summary>
public sealed class WillStoreTests(RedisServerFixture fixture) : IClassFixture<RedisServerFixture>
{
    private static readonly TimeSpan NodeTtl = TimeSpan.FromMilliseconds(500);

    // Many sweeps after a dead node's beat lapsed: a will to be taken has been by then, even on a busy machine.
    private static readonly TimeSpan Sweeps = TimeSpan.FromSeconds(4);

    private static string NewClient() => $"c{Guid.NewGuid():N}"[..12];

    [Fact]
    public async Task NodeStopsBeating_ItsWillTakenOnceByOneOfTheOthers_AndGoneForIt()
    {
        var client = NewClient();
        await using var dead = TestBuses.Registered(fixture.Server, NodeTtl);
        var token = await dead.GetRequiredService<IWillStore>().RegisterAsync("mqtt", "app", client, Encoding.UTF8.GetBytes("offline"), TimeSpan.Zero, default);

        // The writer never watches (never beats again): two other nodes sweep.
        await using var b = TestBuses.Registered(fixture.Server, NodeTtl);
        await using var c = TestBuses.Registered(fixture.Server, NodeTtl);
        var taken = Channel.CreateUnbounded<string>();
        using var watchB = Watch(b, taken.Writer);
        using var watchC = Watch(c, taken.Writer);

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        Assert.Equal("offline", await taken.Reader.ReadAsync(timeout.Token));
        await Task.Delay(Sweeps);
        Assert.False(taken.Reader.TryRead(out var again), $"taken twice: {again}");

        // The node was only silent: its connection's end finds the will taken, and does not publish it again.
        Assert.Equal(WillRelease.Gone, await dead.GetRequiredService<IWillStore>().ReleaseAsync("mqtt", "app", client, token, default));
    }

    [Fact]
    public async Task Release_EntryRedisLost_RemovedSoItsNodePublishes()
    {
        await using var node = TestBuses.Registered(fixture.Server, NodeTtl);
        Assert.Equal(WillRelease.Removed, await node.GetRequiredService<IWillStore>().ReleaseAsync("mqtt", "app", NewClient(), "lost:1", default));
    }

    [Fact]
    public async Task ClientConnectedElsewhere_DeadNodesWillNotTaken_AndReplacedForIt()
    {
        var client = NewClient();
        await using var dead = TestBuses.Registered(fixture.Server, NodeTtl);
        var token = await dead.GetRequiredService<IWillStore>().RegisterAsync("mqtt", "app", client, Encoding.UTF8.GetBytes("offline"), TimeSpan.Zero, default);
        await using var b = TestBuses.Registered(fixture.Server, NodeTtl);
        await b.GetRequiredService<IWillStore>().RegisterAsync("mqtt", "app", client, ReadOnlyMemory<byte>.Empty, TimeSpan.Zero, default);

        var taken = Channel.CreateUnbounded<string>();
        using var watch = Watch(b, taken.Writer);
        await Task.Delay(Sweeps);
        Assert.False(taken.Reader.TryRead(out var will), $"taken: {will}");
        Assert.Equal(WillRelease.Replaced, await dead.GetRequiredService<IWillStore>().ReleaseAsync("mqtt", "app", client, token, default));
    }

    [Fact]
    public async Task DelayedWill_TakenWhenDue_OrCancelledByALaterConnectionBefore()
    {
        var (due, cancelled) = (NewClient(), NewClient());
        await using var dead = TestBuses.Registered(fixture.Server, NodeTtl);
        var store = dead.GetRequiredService<IWillStore>();
        await store.RegisterAsync("mqtt", "app", due, Encoding.UTF8.GetBytes("due"), TimeSpan.FromSeconds(2), default);
        await store.RegisterAsync("mqtt", "app", cancelled, Encoding.UTF8.GetBytes("cancelled"), TimeSpan.FromSeconds(8), default);

        await using var b = TestBuses.Registered(fixture.Server, NodeTtl);
        var taken = Channel.CreateUnbounded<string>();
        using var watch = Watch(b, taken.Writer);

        // Swept (kept as b's until due), then the second client connects again: its will is cancelled.
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        await b.GetRequiredService<IWillStore>().RegisterAsync("mqtt", "app", cancelled, ReadOnlyMemory<byte>.Empty, TimeSpan.Zero, default);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        Assert.Equal("due", await taken.Reader.ReadAsync(timeout.Token));
        await Task.Delay(TimeSpan.FromSeconds(8) + Sweeps);
        Assert.False(taken.Reader.TryRead(out var will), $"taken: {will}");
    }

    private static IDisposable Watch(ServiceProvider node, ChannelWriter<string> taken) =>
        node.GetRequiredService<IWillStore>().WatchOrphans(will =>
        {
            taken.TryWrite(Encoding.UTF8.GetString(will.Span));
            return Task.CompletedTask;
        });
}

using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Relay.Bus.Sessions;

namespace Relay.Bus.Redis.Tests;

/// <summary>
/// What every <see cref="ISessionStore"/> does (MQTT persistent sessions between nodes): a take waits for the holder's
/// release, writes are ordered by claim and version, a clean start empties the entry for good, delete and expiry.
/// </summary>
public abstract class SessionStoreSpec
{
    protected static readonly TimeSpan Ttl = TimeSpan.FromMinutes(1);

    protected abstract ISessionStore Store { get; }

    protected static string NewClient() => $"c{Guid.NewGuid():N}"[..12];

    private ValueTask<SessionTake> TakeAsync(string client, long claim, bool force = false, bool discard = false, bool hold = true) =>
        Store.TakeAsync("mqtt", "app", client, claim, discard, force, hold, Ttl, default);

    private ValueTask<bool> SaveAsync(string client, long claim, long version, bool held, string state, TimeSpan? ttl = null) =>
        Store.SaveAsync("mqtt", "app", client, claim, version, held, Encoding.UTF8.GetBytes(state), ttl ?? Ttl, default);

    private static string Text(SessionTake take) => Encoding.UTF8.GetString(take.State.Span);

    [Fact]
    public async Task Take_WaitsForTheHoldersRelease_ThenGetsItsLastWrite()
    {
        var client = NewClient();
        var none = await TakeAsync(client, 1);
        Assert.Equal((SessionTakeOutcome.Taken, string.Empty), (none.Outcome, Text(none)));
        Assert.True(await SaveAsync(client, 1, 1, held: true, "subscribed"));

        // Claim 2 finds it held by claim 1's node: nothing changes until that node writes it as released.
        Assert.Equal(SessionTakeOutcome.Held, (await TakeAsync(client, 2)).Outcome);
        Assert.True(await SaveAsync(client, 1, 2, held: false, "final"));
        var taken = await TakeAsync(client, 2);
        Assert.Equal((SessionTakeOutcome.Taken, "final"), (taken.Outcome, Text(taken)));

        // Claim 1's node writing late changes nothing now; an earlier claim taking is told a later one holds it.
        Assert.False(await SaveAsync(client, 1, 3, held: true, "late"));
        Assert.Equal(SessionTakeOutcome.Later, (await TakeAsync(client, 1)).Outcome);
        Assert.Equal(SessionTakeOutcome.Held, (await TakeAsync(client, 3)).Outcome);
    }

    [Fact]
    public async Task Take_Forced_GetsWhatAHolderThatNeverReleasedLastWrote()
    {
        var client = NewClient();
        Assert.True(await SaveAsync(client, 4, 1, held: true, "as last written"));
        Assert.Equal(SessionTakeOutcome.Held, (await TakeAsync(client, 5)).Outcome);
        var forced = await TakeAsync(client, 5, force: true);
        Assert.Equal((SessionTakeOutcome.Taken, "as last written"), (forced.Outcome, Text(forced)));
    }

    [Fact]
    public async Task Save_AnEarlierVersionOfTheSameClaim_ChangesNothing()
    {
        var client = NewClient();
        Assert.True(await SaveAsync(client, 7, 2, held: false, "two"));
        Assert.False(await SaveAsync(client, 7, 1, held: false, "one"));
        Assert.False(await SaveAsync(client, 7, 2, held: false, "two again"));
        Assert.Equal("two", Text(await TakeAsync(client, 8)));
    }

    [Fact]
    public async Task Discard_EmptiesTheEntryWhoeverHoldsIt_AndTheOldHoldersLateWriteCannotBringItBack()
    {
        var client = NewClient();
        Assert.True(await SaveAsync(client, 1, 1, held: true, "old"));
        var discarded = await TakeAsync(client, 2, discard: true, hold: false);
        Assert.Equal((SessionTakeOutcome.Taken, string.Empty), (discarded.Outcome, Text(discarded)));
        Assert.False(await SaveAsync(client, 1, 2, held: false, "old, handed over late"));
        var next = await TakeAsync(client, 3);
        Assert.Equal((SessionTakeOutcome.Taken, string.Empty), (next.Outcome, Text(next)));

        // A clean session where there was none leaves nothing behind.
        var other = NewClient();
        Assert.Equal(SessionTakeOutcome.Taken, (await TakeAsync(other, 9, discard: true, hold: false)).Outcome);
        Assert.True(await SaveAsync(other, 1, 1, held: false, "nothing was in the way"));
    }

    [Fact]
    public async Task Delete_RemovesTheSession_UnlessALaterClaimHoldsIt()
    {
        var client = NewClient();
        Assert.True(await SaveAsync(client, 3, 1, held: false, "three"));
        await Store.DeleteAsync("mqtt", "app", client, 2, default);
        Assert.Equal("three", Text(await TakeAsync(client, 4, force: true)));
        await Store.DeleteAsync("mqtt", "app", client, 3, default);
        Assert.Equal(SessionTakeOutcome.Held, (await TakeAsync(client, 5)).Outcome);
        await Store.DeleteAsync("mqtt", "app", client, 4, default);
        var gone = await TakeAsync(client, 5);
        Assert.Equal((SessionTakeOutcome.Taken, string.Empty), (gone.Outcome, Text(gone)));
    }

    [Fact]
    public async Task Entry_ExpiresAfterItsTimeToLive()
    {
        var client = NewClient();
        Assert.True(await SaveAsync(client, 1, 1, held: true, "brief", TimeSpan.FromMilliseconds(200)));
        await Task.Delay(TimeSpan.FromSeconds(1));
        var after = await TakeAsync(client, 2);
        Assert.Equal((SessionTakeOutcome.Taken, string.Empty), (after.Outcome, Text(after)));
    }

    [Fact]
    public async Task ClientIds_OfAnotherAppOrScope_AreOtherSessions()
    {
        var client = NewClient();
        Assert.True(await SaveAsync(client, 1, 1, held: false, "app's"));
        Assert.Equal(string.Empty, Text(await Store.TakeAsync("mqtt", "other", client, 2, false, false, true, Ttl, default)));
        Assert.Equal(string.Empty, Text(await Store.TakeAsync("other", "app", client, 2, false, false, true, Ttl, default)));
        Assert.Equal("app's", Text(await TakeAsync(client, 2)));
    }
}

/// <summary>The in-memory bus's store.</summary>
public sealed class InMemorySessionStoreTests : SessionStoreSpec
{
    protected override ISessionStore Store { get; } = new InMemorySessionStore(TimeProvider.System);
}

/// <summary>The Redis bus's store, as <c>AddRelayBus().AddRedis()</c> registers it, against a real redis-server.</summary>
public sealed class RedisSessionStoreTests : SessionStoreSpec, IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private readonly ServiceProvider _services;

    public RedisSessionStoreTests(RedisServerFixture fixture)
    {
        _services = TestBuses.Registered(fixture.Server);
        Store = _services.GetRequiredService<ISessionStore>();
    }

    protected override ISessionStore Store { get; }

    [Fact]
    public void TheRedisBus_RegistersTheRedisStore() => Assert.Equal("RedisSessionStore", Store.GetType().Name);

    /// <summary>
    /// MQTT QoS 2 receipts (docs/mqtt.md, "Guarantees under failure"): a resend of a packet id gets the first copy's
    /// idempotency id until it is released; a clean start and delete drop them; a connection taken over (an earlier
    /// claim) writes none.
    /// </summary>
    [Fact]
    public async Task Receipts_AResendGetsTheFirstId_UntilReleased_AndACleanStartDropsThem()
    {
        var client = NewClient();
        Assert.True(Store.Durable);
        await Store.TakeAsync("mqtt", "app", client, 3, false, false, true, Ttl, default);
        Assert.Equal("first", await Store.ReceiveAsync("mqtt", "app", client, 3, 7, "first", Ttl, default));
        Assert.Equal("first", await Store.ReceiveAsync("mqtt", "app", client, 3, 7, "second", Ttl, default));
        Assert.Equal("other", await Store.ReceiveAsync("mqtt", "app", client, 3, 8, "other", Ttl, default));
        Assert.True(await Store.ReleaseAsync("mqtt", "app", client, 7, default));
        Assert.False(await Store.ReleaseAsync("mqtt", "app", client, 7, default));
        Assert.Equal("new", await Store.ReceiveAsync("mqtt", "app", client, 3, 7, "new", Ttl, default));

        // A clean start (claim 4) drops every receipt; claim 3's late write is not kept.
        await Store.TakeAsync("mqtt", "app", client, 4, true, true, true, Ttl, default);
        Assert.Equal("late", await Store.ReceiveAsync("mqtt", "app", client, 3, 8, "late", Ttl, default));
        Assert.Equal("fresh", await Store.ReceiveAsync("mqtt", "app", client, 4, 8, "fresh", Ttl, default));
        Assert.Equal("fresh", await Store.ReceiveAsync("mqtt", "app", client, 4, 8, "again", Ttl, default));
        Assert.Equal("clean", await Store.ReceiveAsync("mqtt", "app", client, 4, 7, "clean", Ttl, default));

        await Store.DeleteAsync("mqtt", "app", client, 4, default);
        Assert.False(await Store.ReleaseAsync("mqtt", "app", client, 8, default));
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _services.DisposeAsync();
}

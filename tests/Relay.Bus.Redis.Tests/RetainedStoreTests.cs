using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Relay.Bus.Retained;
using Relay.Core.Messages;

namespace Relay.Bus.Redis.Tests;

/// <summary>
/// What every <see cref="IRetainedStore"/> does (MQTT retained messages): set, replace, clear, the app's limit, matching
/// by filter, app isolation, and the later publish winning when writes cross.
/// </summary>
public abstract class RetainedStoreSpec
{
    protected abstract IRetainedStore Store { get; }

    private static string NewApp() => $"app{Guid.NewGuid():N}"[..12];

    private static RelayMessage Message(string app, string topic, long seq, string data, string epoch = "e1", bool json = false) =>
        new() { App = app, Channel = topic, Epoch = epoch, Seq = seq, Data = Encoding.UTF8.GetBytes(data), DataIsJson = json };

    private async Task<string[]> TopicsAsync(string app, string filter) =>
        [.. (await Store.MatchingAsync(app, filter, CancellationToken.None)).Select(static m => m.Channel).Order(StringComparer.Ordinal)];

    [Fact]
    public async Task Set_Replace_Clear_KeepsTheLastAndItsBytes()
    {
        var app = NewApp();
        Assert.Equal(RetainedOutcome.Kept, await Store.SetAsync(Message(app, "s/1", 1, "{\"t\":1}", json: true), 10, default));
        Assert.Equal(RetainedOutcome.Kept, await Store.SetAsync(Message(app, "s/1", 2, "\u00ff\n\nbinary"), 10, default));

        var kept = Assert.Single(await Store.MatchingAsync(app, "s/1", default));
        Assert.Equal("\u00ff\n\nbinary", Encoding.UTF8.GetString(kept.Data.Span));
        Assert.False(kept.DataIsJson);
        Assert.Equal(("e1", 2L, "s/1", app), (kept.Epoch, kept.Seq, kept.Channel, kept.App));

        Assert.Equal(RetainedOutcome.Cleared, await Store.SetAsync(Message(app, "s/1", 3, string.Empty), 10, default));
        Assert.Empty(await Store.MatchingAsync(app, "s/1", default));
        Assert.Empty(await Store.MatchingAsync(app, "s/#", default));
    }

    [Fact]
    public async Task CrossedWrites_TheLaterPublishWins_ClearsIncluded()
    {
        var app = NewApp();
        Assert.Equal(RetainedOutcome.Kept, await Store.SetAsync(Message(app, "t", 6, "six"), 10, default));
        Assert.Equal(RetainedOutcome.Superseded, await Store.SetAsync(Message(app, "t", 5, "five"), 10, default));
        Assert.Equal(RetainedOutcome.Superseded, await Store.SetAsync(Message(app, "t", 6, "six again"), 10, default));
        Assert.Equal("six", Encoding.UTF8.GetString(Assert.Single(await Store.MatchingAsync(app, "t", default)).Data.Span));

        // A clear at 8, then a write of 7 arriving late: still cleared; a write of 9 retains again.
        Assert.Equal(RetainedOutcome.Cleared, await Store.SetAsync(Message(app, "t", 8, string.Empty), 10, default));
        Assert.Equal(RetainedOutcome.Superseded, await Store.SetAsync(Message(app, "t", 7, "seven"), 10, default));
        Assert.Empty(await Store.MatchingAsync(app, "t", default));
        Assert.Equal(RetainedOutcome.Kept, await Store.SetAsync(Message(app, "t", 9, "nine"), 10, default));

        // Another epoch (the channel started again): its write wins whatever its seq.
        Assert.Equal(RetainedOutcome.Kept, await Store.SetAsync(Message(app, "t", 1, "new epoch", epoch: "e2"), 10, default));
        Assert.Equal("new epoch", Encoding.UTF8.GetString(Assert.Single(await Store.MatchingAsync(app, "t", default)).Data.Span));
    }

    [Fact]
    public async Task TheAppsLimit_RefusesNewTopicsOnly_AndAClearMakesRoom()
    {
        var app = NewApp();
        Assert.True(await Store.HasRoomForAsync(app, "a", 2, default));
        Assert.Equal(RetainedOutcome.Kept, await Store.SetAsync(Message(app, "a", 1, "x"), 2, default));
        Assert.Equal(RetainedOutcome.Kept, await Store.SetAsync(Message(app, "b", 1, "x"), 2, default));

        Assert.False(await Store.HasRoomForAsync(app, "c", 2, default));
        Assert.True(await Store.HasRoomForAsync(app, "a", 2, default));
        Assert.Equal(RetainedOutcome.Full, await Store.SetAsync(Message(app, "c", 1, "x"), 2, default));
        Assert.Equal(RetainedOutcome.Kept, await Store.SetAsync(Message(app, "a", 2, "y"), 2, default));
        Assert.Equal(["a", "b"], await TopicsAsync(app, "#"));

        // Another app has its own limit.
        Assert.True(await Store.HasRoomForAsync(NewApp(), "c", 2, default));

        Assert.Equal(RetainedOutcome.Cleared, await Store.SetAsync(Message(app, "b", 2, string.Empty), 2, default));
        Assert.Equal(RetainedOutcome.Kept, await Store.SetAsync(Message(app, "c", 1, "x"), 2, default));
        Assert.Equal(["a", "c"], await TopicsAsync(app, "#"));
    }

    [Fact]
    public async Task Filters_MatchAsTheLiveMatcherDoes_AndAppsAreApart()
    {
        var app = NewApp();
        string[] topics = ["home", "home/kitchen", "home/kitchen/temp", "home/hall/temp", "homer/x", "office/temp", "glob?[x]/a\\b", "glob?[x]/c"];
        var seq = 0;
        foreach (var topic in topics)
        {
            Assert.Equal(RetainedOutcome.Kept, await Store.SetAsync(Message(app, topic, ++seq, topic), 100, default));
        }

        Assert.Equal(["home", "home/hall/temp", "home/kitchen", "home/kitchen/temp"], await TopicsAsync(app, "home/#"));
        Assert.Equal(["home/hall/temp", "home/kitchen/temp"], await TopicsAsync(app, "home/+/temp"));
        Assert.Equal(["home/hall/temp", "home/kitchen/temp"], await TopicsAsync(app, "+/+/temp"));
        Assert.Equal(["office/temp"], await TopicsAsync(app, "+/temp"));
        Assert.Equal(["home/kitchen"], await TopicsAsync(app, "home/kitchen"));
        Assert.Equal(["glob?[x]/a\\b", "glob?[x]/c"], await TopicsAsync(app, "glob?[x]/+"));
        Assert.Equal(topics.Order(StringComparer.Ordinal), await TopicsAsync(app, "#"));
        Assert.Empty(await TopicsAsync(app, "hom"));

        Assert.Empty(await TopicsAsync(NewApp(), "#"));
        Assert.Empty(await TopicsAsync(NewApp(), "home"));
    }

    [Fact]
    public async Task ManyTopics_AllFoundByAPattern()
    {
        var app = NewApp();
        for (var i = 0; i < 1_200; i++)
        {
            Assert.Equal(RetainedOutcome.Kept, await Store.SetAsync(Message(app, $"fleet/{i}/state", 1, $"{i}"), 2_000, default));
        }

        Assert.Equal(1_200, (await Store.MatchingAsync(app, "fleet/+/state", default)).Count);
        Assert.Equal("7", Encoding.UTF8.GetString(Assert.Single(await Store.MatchingAsync(app, "fleet/7/state", default)).Data.Span));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task MqttProperties_KeptWithTheMessage(bool json)
    {
        var app = NewApp();
        var properties = BusCodecTests.Properties();
        var message = Message(app, "p/1", 1, json ? "{\"a\":1}" : "\n\nbytes\n", json: json);
        Assert.Equal(RetainedOutcome.Kept, await Store.SetAsync(new RelayMessage { App = app, Channel = "p/1", Epoch = "e1", Seq = 1, Data = message.Data, DataIsJson = json, Properties = properties }, 10, default));
        Assert.Equal(RetainedOutcome.Kept, await Store.SetAsync(Message(app, "p/2", 1, "none"), 10, default));

        var kept = Assert.Single(await Store.MatchingAsync(app, "p/1", default));
        Assert.Equal(message.Data.ToArray(), kept.Data.ToArray());
        Assert.Equal(json, kept.DataIsJson);
        BusCodecTests.AssertProperties(properties, kept.Properties);
        Assert.Null(Assert.Single(await Store.MatchingAsync(app, "p/2", default)).Properties);
    }
}

/// <summary>The in-memory bus's store.</summary>
public sealed class InMemoryRetainedStoreTests : RetainedStoreSpec
{
    protected override IRetainedStore Store { get; } = new InMemoryRetainedStore(TimeProvider.System);
}

/// <summary>The Redis bus's store, as <c>AddRelayBus().AddRedis()</c> registers it, against a real redis-server.</summary>
public sealed class RedisRetainedStoreTests : RetainedStoreSpec, IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private readonly ServiceProvider _services;

    public RedisRetainedStoreTests(RedisServerFixture fixture)
    {
        _services = TestBuses.Registered(fixture.Server);
        Store = _services.GetRequiredService<IRetainedStore>();
    }

    protected override IRetainedStore Store { get; }

    [Fact]
    public void TheRedisBus_RegistersTheRedisStore() => Assert.Equal("RedisRetainedStore", Store.GetType().Name);

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _services.DisposeAsync();
}

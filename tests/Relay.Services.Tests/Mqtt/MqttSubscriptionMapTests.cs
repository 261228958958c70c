using Relay.Ingress.Mqtt;

namespace Relay.Services.Tests.Mqtt;

/// <summary>A session's subscriptions: one held in fields, a dictionary from the second on, the same answers either way.</summary>
public sealed class MqttSubscriptionMapTests
{
    [Fact]
    public void OneThenTwoThenNone_AnswersAsADictionary()
    {
        var map = new MqttSubscriptionMap();
        Assert.Equal(0, map.Count);
        Assert.Empty(Pairs(map));
        Assert.False(map.Remove("a/b"));

        var first = Sink("a/b");
        Assert.True(map.TryAdd("a/b", first));
        Assert.False(map.TryAdd("a/b", Sink("a/b")));
        Assert.Equal(1, map.Count);
        Assert.True(map.ContainsKey("a/b"));
        Assert.False(map.ContainsKey("a/c"));
        Assert.Equal([("a/b", first)], Pairs(map));
        Assert.Equal([first], map.Sinks());

        var second = Sink("a/c");
        Assert.True(map.TryAdd("a/c", second));
        Assert.Equal(2, map.Count);
        Assert.Equal([("a/b", first), ("a/c", second)], Pairs(map).OrderBy(static pair => pair.Item1, StringComparer.Ordinal));
        Assert.True(map.Remove("a/b", out var removed));
        Assert.Same(first, removed);
        Assert.Equal([("a/c", second)], Pairs(map));

        map.Clear();
        Assert.Equal(0, map.Count);
        Assert.Empty(map.Sinks());
        Assert.True(map.TryAdd("x", Sink("x")));
        Assert.True(map.Remove("x", out var only));
        Assert.Equal("x", only!.Filter);
        Assert.Equal(0, map.Count);
    }

    private static List<(string, MqttSubscriptionSink)> Pairs(MqttSubscriptionMap map)
    {
        var pairs = new List<(string, MqttSubscriptionSink)>();
        foreach (var (filter, sink) in map)
        {
            pairs.Add((filter, sink));
        }

        return pairs;
    }

    // The map keeps sinks by reference only: no session is needed behind them.
    private static MqttSubscriptionSink Sink(string filter) => new(session: null!, filter, qos: 0);
}

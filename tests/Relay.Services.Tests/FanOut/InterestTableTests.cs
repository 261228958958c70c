using Relay.Bus.FanOut;
using Relay.FanOut.Interest;

namespace Relay.Services.Tests.FanOut;

/// <summary>
/// The fan-out's interest table through the transitions a channel's node set goes through (none, one node, several,
/// back to one, none): one node's channels share one node array, so every change must leave what readers see right.
/// </summary>
public sealed class InterestTableTests
{
    private static List<string> NodesOf(InterestTable table, string channel)
    {
        var nodes = new List<string>();
        table.ForEachNode("app", channel, nodes, static (node, into) => into.Add(node));
        return nodes;
    }

    private static int TotalOf(InterestTable table, string channel) =>
        table.Channels("app", prefix: null).Where(c => c.Channel == channel).Sum(c => c.Subscribers);

    [Fact]
    public void OneNodeThenThreeThenBackToOneThenNone_NodesAndTotalsFollowEveryChange()
    {
        var table = new InterestTable();
        table.Apply(new InterestChange("n1", "app", "a", 2));
        table.Apply(new InterestChange("n1", "app", "b", 5));
        Assert.Equal(["n1"], NodesOf(table, "a"));
        Assert.Equal((2, 5), (TotalOf(table, "a"), TotalOf(table, "b")));

        table.Apply(new InterestChange("n2", "app", "a", 3));
        table.Apply(new InterestChange("n3", "app", "a", 4));
        table.Apply(new InterestChange("n2", "app", "a", 7));
        Assert.Equal(["n1", "n2", "n3"], NodesOf(table, "a"));
        Assert.Equal(2 + 7 + 4, TotalOf(table, "a"));

        // Removing the first node leaves the second's count first; channel b, sharing n1's array, is untouched.
        table.Apply(new InterestChange("n1", "app", "a", 0));
        Assert.Equal(["n2", "n3"], NodesOf(table, "a"));
        Assert.Equal(7 + 4, TotalOf(table, "a"));
        Assert.Equal(["n1"], NodesOf(table, "b"));
        Assert.Equal(5, TotalOf(table, "b"));

        table.Apply(new InterestChange("n2", "app", "a", 0));
        Assert.Equal(["n3"], NodesOf(table, "a"));
        Assert.Equal(4, TotalOf(table, "a"));
        table.Apply(new InterestChange("n3", "app", "a", 1));
        Assert.Equal(1, TotalOf(table, "a"));

        table.Apply(new InterestChange("n3", "app", "a", 0));
        Assert.Empty(NodesOf(table, "a"));
        Assert.Equal(0, TotalOf(table, "a"));
        Assert.Equal(["n1"], NodesOf(table, "b"));
    }

    [Fact]
    public void NodeRemoved_ItsChannelsAndPatternsForgotten_OthersKeepTheirCounts_ANewJoinerStartsClean()
    {
        var table = new InterestTable();
        for (var i = 0; i < 100; i++)
        {
            table.Apply(new InterestChange("n1", "app", $"c{i}", 1));
        }

        table.Apply(new InterestChange("n2", "app", "c0", 3));
        table.Apply(new InterestChange("n1", "app", "p/+", 1));
        Assert.Equal(["n1", "n2"], NodesOf(table, "c0"));
        Assert.Equal(["n1"], NodesOf(table, "p/x"));

        table.RemoveNode("n1");
        Assert.Equal(["n2"], NodesOf(table, "c0"));
        Assert.Equal(3, TotalOf(table, "c0"));
        Assert.Empty(NodesOf(table, "c1"));
        Assert.Empty(NodesOf(table, "p/x"));

        // The node comes back: only what it registers again counts.
        table.Apply(new InterestChange("n1", "app", "c1", 2));
        Assert.Equal(["n1"], NodesOf(table, "c1"));
        Assert.Equal(2, TotalOf(table, "c1"));
        Assert.Empty(NodesOf(table, "c2"));
    }

    [Fact]
    public async Task PublishersReadWhileNodesComeAndGo_EveryReadSeesAConsistentNodeSet()
    {
        // Readers take no lock: each must see a set of distinct nodes that was true at some point, never a torn one.
        var table = new InterestTable();
        table.Apply(new InterestChange("stay", "app", "hot", 1));
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        var writer = Task.Run(() =>
        {
            var i = 0;
            while (!stop.IsCancellationRequested)
            {
                var node = $"n{i++ % 4}";
                table.Apply(new InterestChange(node, "app", "hot", i % 3));
            }
        });

        var reads = 0;
        while (!stop.IsCancellationRequested)
        {
            var nodes = NodesOf(table, "hot");
            Assert.Contains("stay", nodes);
            Assert.Equal(nodes.Count, nodes.Distinct().Count());
            Assert.True(nodes.Count <= 5, string.Join(",", nodes));
            reads++;
        }

        await writer;
        Assert.True(reads > 1000, $"{reads} reads");
        Assert.Contains("stay", NodesOf(table, "hot"));
    }
}

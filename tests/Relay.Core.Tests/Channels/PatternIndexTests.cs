using System.Reflection;
using FsCheck;
using FsCheck.Fluent;
using Relay.Core.Channels;

namespace Relay.Core.Tests.Channels;

public sealed class PatternIndexTests
{
    private sealed class Sub(string name)
    {
        public override string ToString() => name;
    }

    private static List<T> MatchOf<T>(PatternIndex<T> index, string channel) where T : class
    {
        var results = new List<T>();
        index.Match(channel, results);
        return results;
    }

    private static int NodesOf<T>(PatternIndex<T> index) where T : class =>
        (int)typeof(PatternIndex<T>).GetMethod("CountNodes", BindingFlags.Instance | BindingFlags.NonPublic)!.Invoke(index, null)!;

    // The reference: MQTT 3.1.1 matching written the obvious way, level by level ('+' matches an empty level too;
    // a wildcard first level never matches a '$' name, MQTT 4.7.2).
    private static bool NaiveMatches(string pattern, string channel)
    {
        var p = pattern.Split('/');
        var c = channel.Split('/');
        if (channel.StartsWith('$') && p[0] is "+" or "#")
        {
            return false;
        }

        for (var i = 0; i < p.Length; i++)
        {
            if (p[i] == "#")
            {
                return true;
            }

            if (i >= c.Length || (p[i] != "+" && p[i] != c[i]))
            {
                return false;
            }
        }

        return p.Length == c.Length;
    }

    [Theory]
    [InlineData("sport/#", "sport", true)]
    [InlineData("sport/#", "sport/a", true)]
    [InlineData("sport/#", "sport/a/b", true)]
    [InlineData("sport/#", "sports", false)]
    [InlineData("sport/#", "spor", false)]
    [InlineData("sport/#", "other/sport", false)]
    [InlineData("+/+", "a/b", true)]
    [InlineData("+/+", "a", false)]
    [InlineData("+/+", "a/b/c", false)]
    [InlineData("#", "a", true)]
    [InlineData("#", "a/b/c/d/e", true)]
    [InlineData("#", "chat:lobby", true)]
    [InlineData("+", "a", true)]
    [InlineData("+", "a/b", false)]
    [InlineData("a/+", "a", false)]
    [InlineData("a/+", "a/", true)]
    [InlineData("+/b", "/b", true)]
    [InlineData("+/+", "/finance", true)]
    [InlineData("/+", "/finance", true)]
    [InlineData("+", "/finance", false)]
    [InlineData("/#", "/a/b", true)]
    [InlineData("a//+", "a//b", true)]
    [InlineData("a/+/b", "a//b", true)]
    [InlineData("#", "$SYS/x", false)]
    [InlineData("+/x", "$SYS/x", false)]
    [InlineData("+", "$SYS", false)]
    [InlineData("$SYS/#", "$SYS/x", true)]
    [InlineData("$SYS/+", "$SYS/x", true)]
    [InlineData("$SYS", "$SYS", true)]
    [InlineData("a/#", "a/$x", true)]
    [InlineData("a/+", "a/$x", true)]
    [InlineData("a/+/c", "a/b/c", true)]
    [InlineData("a/+/c", "a/b/d", false)]
    [InlineData("a/+/c", "a/c", false)]
    [InlineData("+/#", "a", true)]
    [InlineData("+/#", "a/b/c", true)]
    [InlineData("a/b", "a/b", true)]
    [InlineData("a/b", "a/b/c", false)]
    [InlineData("a/b", "a", false)]
    [InlineData("a/b/#", "a", false)]
    [InlineData("chat:lobby/+", "chat:lobby/x", true)]
    public void Match_Pattern_FollowsMqttSemantics(string pattern, string channel, bool expected)
    {
        var index = new PatternIndex<Sub>();
        var sub = new Sub("s");
        index.Add(pattern, sub);
        Assert.Equal(expected ? [sub] : [], MatchOf(index, channel));
        Assert.Equal(expected, NaiveMatches(pattern, channel));
        Assert.Equal(expected, ChannelName.PatternMatches(pattern, channel));
    }

    [Fact]
    public void Match_EmptyChannel_MatchesNothingEvenHash()
    {
        var index = new PatternIndex<Sub>();
        index.Add("#", new Sub("all"));
        index.Add("+", new Sub("one"));
        Assert.Empty(MatchOf(index, ""));
    }

    [Fact]
    public void Match_SeveralPatterns_ReturnsOnlyTheMatchingSubscribers()
    {
        var index = new PatternIndex<Sub>();
        var (a, b, c, d) = (new Sub("a"), new Sub("b"), new Sub("c"), new Sub("d"));
        index.Add("x/+/z", a);
        index.Add("x/#", b);
        index.Add("y/#", c);
        index.Add("x/y/+", d);

        Assert.Equal([a, b], MatchOf(index, "x/q/z").OrderBy(s => s.ToString()));
        Assert.Equal([a, b, d], MatchOf(index, "x/y/z").OrderBy(s => s.ToString()));
        Assert.Equal([b], MatchOf(index, "x"));
        Assert.Empty(MatchOf(index, "z/y/z"));
    }

    [Fact]
    public void Match_AppendsWithoutClearingResults()
    {
        var index = new PatternIndex<Sub>();
        var (first, second) = (new Sub("first"), new Sub("second"));
        index.Add("a/+", second);
        var results = new List<Sub> { first };
        index.Match("a/b", results);
        Assert.Equal([first, second], results);
    }

    [Fact]
    public void Match_SubscriberUnderTwoMatchingPatterns_IsAppendedOncePerPattern()
    {
        var index = new PatternIndex<Sub>();
        var sub = new Sub("s");
        Assert.True(index.Add("a/+", sub));
        Assert.True(index.Add("a/#", sub));
        Assert.True(index.Add("#", sub));
        Assert.Equal([sub, sub, sub], MatchOf(index, "a/b"));
        Assert.Equal(3, index.Count);
    }

    [Fact]
    public void Add_SamePatternAndSubscriberTwice_ReturnsFalseAndKeepsOne()
    {
        var index = new PatternIndex<Sub>();
        var sub = new Sub("s");
        Assert.True(index.Add("a/+", sub));
        Assert.False(index.Add("a/+", sub));
        Assert.Equal(1, index.Count);
        Assert.Single(MatchOf(index, "a/b"));
    }

    [Fact]
    public void Add_EqualButDistinctSubscribers_AreBothKept()
    {
        // Subscribers compare by reference: two equal strings that are different objects are two subscribers.
        var index = new PatternIndex<string>();
        var one = new string('x', 3);
        var two = new string('x', 3);
        Assert.True(index.Add("a/#", one));
        Assert.True(index.Add("a/#", two));
        var matched = MatchOf(index, "a/b");
        Assert.Equal(2, matched.Count);
        Assert.Contains(matched, s => ReferenceEquals(s, one));
        Assert.Contains(matched, s => ReferenceEquals(s, two));
        Assert.False(index.Remove("a/#", new string('x', 3)));
        Assert.Equal(2, index.Count);
    }

    [Theory]
    [InlineData("")]
    [InlineData("a/b#")]
    [InlineData("a+/b")]
    [InlineData("a/#/b")]
    [InlineData("chat:*")]
    public void Add_InvalidPattern_ThrowsWithTheReason(string pattern)
    {
        var index = new PatternIndex<Sub>();
        var ex = Assert.Throws<ArgumentException>(() => index.Add(pattern, new Sub("s")));
        Assert.Equal("pattern", ex.ParamName);
        ChannelName.IsValidTopicFilter(pattern, out var reason);
        Assert.StartsWith(reason, ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, index.Count);
    }

    [Fact]
    public void Remove_AbsentPatternOrSubscriber_ReturnsFalse()
    {
        var index = new PatternIndex<Sub>();
        var (sub, other) = (new Sub("s"), new Sub("o"));
        index.Add("a/+", sub);
        Assert.False(index.Remove("a/+", other));
        Assert.False(index.Remove("a/#", sub));
        Assert.False(index.Remove("a", sub));
        Assert.False(index.Remove("a/+/c", sub));
        Assert.False(index.Remove("not valid//", sub));
        Assert.Equal(1, index.Count);
    }

    [Fact]
    public void Remove_PresentPair_StopsMatchingAndKeepsOthers()
    {
        var index = new PatternIndex<Sub>();
        var (a, b) = (new Sub("a"), new Sub("b"));
        index.Add("x/#", a);
        index.Add("x/#", b);
        index.Add("x/+", a);
        Assert.True(index.Remove("x/#", a));
        Assert.Equal([a, b], MatchOf(index, "x/y").OrderBy(s => s.ToString()));
        Assert.Equal([b], MatchOf(index, "x/y/z"));
        Assert.Equal(2, index.Count);
        Assert.False(index.Remove("x/#", a));
    }

    [Fact]
    public void Remove_LastSubscriber_PrunesEmptyNodes()
    {
        var index = new PatternIndex<Sub>();
        var (a, b) = (new Sub("a"), new Sub("b"));
        index.Add("a/b/c/d", a);
        index.Add("a/+/c/#", a);
        index.Add("a/b/x", b);
        // a, b, c, d, x, and +, c: '#' lives on its parent node, so it adds none.
        Assert.Equal(7, NodesOf(index));

        index.Remove("a/b/c/d", a);
        Assert.Equal(5, NodesOf(index)); // "a/b" stays for "a/b/x"
        index.Remove("a/+/c/#", a);
        Assert.Equal(3, NodesOf(index));
        index.Remove("a/b/x", b);
        Assert.Equal(0, NodesOf(index));
        Assert.Equal(0, index.Count);
        Assert.Empty(MatchOf(index, "a/b/x"));
    }

    [Fact]
    public void Remove_ThenAddAgain_MatchesAgain()
    {
        var index = new PatternIndex<Sub>();
        var sub = new Sub("s");
        index.Add("a/+/c", sub);
        index.Remove("a/+/c", sub);
        Assert.Empty(MatchOf(index, "a/b/c"));
        Assert.True(index.Add("a/+/c", sub));
        Assert.Equal([sub], MatchOf(index, "a/b/c"));
    }

    [Fact]
    public void Remove_InnerPatternWithDeeperOnes_KeepsTheDeeperOnes()
    {
        var index = new PatternIndex<Sub>();
        var (inner, deep) = (new Sub("inner"), new Sub("deep"));
        index.Add("a/b", inner);
        index.Add("a/b/c", deep);
        index.Remove("a/b", inner);
        Assert.Equal(3, NodesOf(index)); // a, b, c remain: b still leads to c
        Assert.Equal([deep], MatchOf(index, "a/b/c"));
        Assert.Empty(MatchOf(index, "a/b"));
    }

    [Fact]
    public void Match_AfterWarmUp_AllocatesNothing()
    {
        var index = new PatternIndex<Sub>();
        var sub = new Sub("s");
        foreach (var pattern in (string[])["a/b/c/d/e", "a/+/c/#", "#", "+/+/+/+/+", "a/b/+/d/e", "x/y"])
        {
            index.Add(pattern, sub);
        }

        var results = new List<Sub>(16);
        for (var i = 0; i < 100; i++)
        {
            results.Clear();
            index.Match("a/b/c/d/e", results);
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++)
        {
            results.Clear();
            index.Match("a/b/c/d/e", results);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(5, results.Count);
    }

    [Fact]
    public void Match_With100000Patterns_ReturnsExactlyTheMatchingSubscribers()
    {
        var index = new PatternIndex<Sub>();
        var subs = new Sub[100_000];
        for (var i = 0; i < subs.Length; i++)
        {
            subs[i] = new Sub("p" + i);
            Assert.True(index.Add($"t/{i % 1000}/{i / 1000}/+/z", subs[i]));
        }

        var (plusPlus, allPlus, hashAfterAll, tHash, shorter, other) =
            (new Sub("plusPlus"), new Sub("allPlus"), new Sub("hashAfterAll"), new Sub("tHash"), new Sub("shorter"), new Sub("other"));
        index.Add("t/42/+/+/z", plusPlus);
        index.Add("+/+/+/+/+", allPlus);
        index.Add("t/42/7/q/z/#", hashAfterAll);
        index.Add("t/#", tHash);
        index.Add("t/42/7/q", shorter);
        index.Add("t/43/7/q/z", other);
        Assert.Equal(100_006, index.Count);

        // Only pattern 7042 is t/42/7/+/z.
        var matched = MatchOf(index, "t/42/7/q/z");
        Assert.Equal(
            new[] { "allPlus", "hashAfterAll", "p7042", "plusPlus", "tHash" },
            matched.Select(s => s.ToString()).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Match_DuringConcurrentAddsAndRemoves_NeverFailsAndEndsRight()
    {
        const int Writers = 4;
        const int Readers = 4;
        const int Rounds = 2000;
        var index = new PatternIndex<Sub>();
        var stable = new Sub("stable");
        index.Add("#", stable);
        index.Add("s/+", stable);

        var subs = new Sub[Writers][];
        for (var w = 0; w < Writers; w++)
        {
            subs[w] = new Sub[Rounds];
            for (var i = 0; i < Rounds; i++)
            {
                subs[w][i] = new Sub($"w{w}.{i}");
            }
        }

        static string[] PatternsOf(int w, int i) => [$"w{w}/+/{i % 7}", $"w{w}/{i % 5}/#", $"w{w}/u{i}/+", "+/+/+"];

        var writersLeft = Writers;
        var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(() =>
        {
            for (var i = 0; i < Rounds; i++)
            {
                foreach (var pattern in PatternsOf(w, i))
                {
                    Assert.True(index.Add(pattern, subs[w][i]));
                }

                // Odd rounds undo themselves, so nodes are created and pruned while readers walk them.
                if (i % 2 == 1)
                {
                    foreach (var pattern in PatternsOf(w, i))
                    {
                        Assert.True(index.Remove(pattern, subs[w][i]));
                    }
                }
            }

            Interlocked.Decrement(ref writersLeft);
        }));

        var readers = Enumerable.Range(0, Readers).Select(r => Task.Run(() =>
        {
            var results = new List<Sub>();
            for (var n = 0; n < 2_000_000 && Volatile.Read(ref writersLeft) > 0; n++)
            {
                var w = n % Writers;
                results.Clear();
                index.Match($"w{w}/u{n % Rounds}/x", results);
                Assert.Equal(1, results.Count(s => ReferenceEquals(s, stable)));
                results.Clear();
                index.Match("s/q", results);
                Assert.Equal(2, results.Count(s => ReferenceEquals(s, stable)));
                Assert.DoesNotContain(null, results);
            }
        }));

        await Task.WhenAll([.. writers, .. readers]).WaitAsync(TimeSpan.FromSeconds(60));

        var model = new List<(string Pattern, Sub Sub)> { ("#", stable), ("s/+", stable) };
        for (var w = 0; w < Writers; w++)
        {
            for (var i = 0; i < Rounds; i += 2)
            {
                model.AddRange(PatternsOf(w, i).Select(p => (p, subs[w][i])));
            }
        }

        Assert.Equal(model.Count, index.Count);
        foreach (var channel in (string[])["w0/u0/x", "w1/u1/x", "w2/3/3", "w3/4/q/r", "s/q", "a/b/c", "w0/u1998/5"])
        {
            var expected = model.Where(e => NaiveMatches(e.Pattern, channel)).Select(e => e.Sub.ToString()).Order(StringComparer.Ordinal);
            var actual = MatchOf(index, channel).Select(s => s.ToString()).Order(StringComparer.Ordinal);
            Assert.Equal(expected, actual);
        }
    }

    private sealed record Op(bool Add, string Pattern, int Sub)
    {
        public override string ToString() => $"{(Add ? "+" : "-")}{Pattern}@{Sub}";
    }

    [Fact]
    public void Match_RandomPatternsAndChannels_AgreesWithNaiveMatcher()
    {
        var patternGen =
            from length in Gen.Choose(0, 4)
            from levels in Gen.ArrayOf(Gen.Elements("a", "b", "c", "+", "", "$a"), length)
            from hash in Gen.Elements(false, true)
            let pattern = hash || length == 0 ? string.Join('/', [.. levels, "#"]) : string.Join('/', levels)
            select pattern.Length == 0 ? "a" : pattern;

        // MQTT topic names: empty levels and '$' first levels too.
        var channelGen =
            from length in Gen.Choose(1, 5)
            from levels in Gen.ArrayOf(Gen.Elements("a", "b", "c", "", "$a"), length)
            let channel = string.Join('/', levels)
            select channel.Length == 0 ? "b" : channel;
        var opGen =
            from add in Gen.Frequency((3, Gen.Constant(true)), (1, Gen.Constant(false)))
            from pattern in patternGen
            from sub in Gen.Choose(0, 3)
            select new Op(add, pattern, sub);
        var cases = Gen.Zip(Gen.ListOf(opGen), Gen.NonEmptyListOf(channelGen)).ToArbitrary();

        var property = Prop.ForAll(cases, c =>
        {
            var (ops, channels) = c;
            var subs = new[] { new Sub("0"), new Sub("1"), new Sub("2"), new Sub("3") };
            var index = new PatternIndex<Sub>();
            var model = new HashSet<(string Pattern, int Sub)>();
            foreach (var op in ops)
            {
                var changed = op.Add ? index.Add(op.Pattern, subs[op.Sub]) : index.Remove(op.Pattern, subs[op.Sub]);
                var modelChanged = op.Add ? model.Add((op.Pattern, op.Sub)) : model.Remove((op.Pattern, op.Sub));
                if (changed != modelChanged)
                {
                    return false;
                }
            }

            if (index.Count != model.Count)
            {
                return false;
            }

            foreach (var channel in channels)
            {
                var expected = model.Where(e => NaiveMatches(e.Pattern, channel)).Select(e => e.Sub).Order();
                var actual = MatchOf(index, channel).Select(s => int.Parse(s.ToString(), System.Globalization.CultureInfo.InvariantCulture)).Order();
                if (!expected.SequenceEqual(actual) || model.Any(e => ChannelName.PatternMatches(e.Pattern, channel) != NaiveMatches(e.Pattern, channel)))
                {
                    return false;
                }
            }

            // Removing what is left must leave an empty trie behind.
            foreach (var (pattern, sub) in model)
            {
                index.Remove(pattern, subs[sub]);
            }

            return index.Count == 0 && NodesOf(index) == 0;
        });
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(500), property);
    }
}

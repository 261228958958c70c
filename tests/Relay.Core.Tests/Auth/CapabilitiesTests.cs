using System.Text.Json;
using Relay.Core.Auth;

namespace Relay.Core.Tests.Auth;

public sealed class CapabilitiesTests
{
    private static Capabilities Caps(params (string Glob, Operations Ops)[] entries) =>
        Capabilities.From(entries.Select(e => new KeyValuePair<string, Operations>(e.Glob, e.Ops)));

    [Theory]
    [InlineData("chat:*", "chat:lobby", true)]
    [InlineData("chat:*", "chat:", true)]
    [InlineData("chat:*", "chat", false)]
    [InlineData("chat:*", "news:chat:lobby", false)]
    [InlineData("*", "anything/at:all", true)]
    [InlineData("*", "x", true)]
    [InlineData("a*b*c", "abc", true)]
    [InlineData("a*b*c", "aXXbYYc", true)]
    [InlineData("a*b*c", "abcbc", true)]
    [InlineData("a*b*c", "abcx", false)]
    [InlineData("a*b*c", "acb", false)]
    [InlineData("*lobby", "chat:lobby", true)]
    [InlineData("*lobby", "chat:lobby2", false)]
    [InlineData("a**b", "ab", true)]
    [InlineData("exact", "exact", true)]
    [InlineData("exact", "exactly", false)]
    [InlineData("exact", "Exact", false)]
    public void GlobMatches_Glob_MatchesRunsOfAnyCharacters(string glob, string channel, bool expected) =>
        Assert.Equal(expected, Capabilities.GlobMatches(glob, channel));

    [Theory]
    [InlineData("*", "chat:*", true)]
    [InlineData("chat:*", "*", false)]
    [InlineData("chat:*", "chat:a*", true)]
    [InlineData("chat:a*", "chat:*", false)]
    [InlineData("chat:*", "chat:lobby", true)]
    [InlineData("chat:lobby", "chat:*", false)]
    [InlineData("*:lobby", "chat:*", false)]
    [InlineData("a*c", "ab*c", true)]
    [InlineData("a*c", "a*", false)]
    [InlineData("*", "*", true)]
    [InlineData("x", "x", true)]
    public void GlobCovers_OuterAndInner_TellsWhetherEveryChannelIsCovered(string outer, string inner, bool expected) =>
        Assert.Equal(expected, Capabilities.GlobCovers(outer, inner));

    [Theory]
    [InlineData("sport/#", false)] // '#' also matches the parent level: the channel 'sport'
    [InlineData("sport/+", true)]
    [InlineData("sport/+/x", true)]
    [InlineData("sport/x/#", true)]
    [InlineData("sport/+/#", true)]
    [InlineData("#", false)]
    [InlineData("+", false)]
    [InlineData("+/x", false)]
    [InlineData("+/#", false)]
    [InlineData("sports/+", false)]
    public void Allows_PatternUnderSlashStar_OnlyWhenEveryMatchingChannelIsCovered(string pattern, bool expected) =>
        Assert.Equal(expected, Caps(("sport/*", Operations.Subscribe)).Allows(pattern, Operations.Subscribe));

    [Theory]
    [InlineData("sport*", "sport/#", true)]
    [InlineData("sport*", "sports/+/x", true)]
    [InlineData("sport*", "+/sport", false)]
    [InlineData("*", "#", true)]
    [InlineData("*", "+/+/#", true)]
    [InlineData("*/x", "+/x", true)]
    [InlineData("*/x", "sport/+/x", true)]
    [InlineData("*/x", "sport/x/#", false)]
    [InlineData("sport/*/x", "sport/+/x", true)]
    [InlineData("sport/*/x", "sport/+", false)]
    [InlineData("sport/a*", "sport/+", false)]
    [InlineData("chat:*", "chat:lobby/#", true)]
    [InlineData("chat:*", "#", false)]
    [InlineData("sport/+/x", "sport/+/x", false)] // a glob's '+' is a plain character, and no channel has one
    [InlineData("sport/#", "sport/#", false)]
    [InlineData("sport/#", "sport/x", false)]
    public void Allows_PatternAgainstOneGlob_IsExact(string glob, string pattern, bool expected) =>
        Assert.Equal(expected, Caps((glob, Operations.Subscribe)).Allows(pattern, Operations.Subscribe));

    [Fact]
    public void Allows_PatternCoveredOnlyByGlobsTogether_IsAllowed()
    {
        var caps = Caps(("sport", Operations.Subscribe), ("sport/*", Operations.Subscribe));
        Assert.True(caps.Allows("sport/#", Operations.Subscribe));
        Assert.False(caps.Allows("#", Operations.Subscribe));
        Assert.False(Caps(("sport", Operations.Subscribe), ("sport/*", Operations.Publish)).Allows("sport/#", Operations.Subscribe));
    }

    [Fact]
    public void OperationsFor_Pattern_IsWhatEveryMatchingChannelAllows()
    {
        var caps = Caps(("sport/*", Operations.Subscribe | Operations.History), ("sport/live/*", Operations.Presence), ("*", Operations.Publish));
        Assert.Equal(Operations.Subscribe | Operations.History | Operations.Publish, caps.OperationsFor("sport/+"));
        Assert.Equal(Operations.Subscribe | Operations.History | Operations.Publish | Operations.Presence, caps.OperationsFor("sport/live/+"));
        Assert.Equal(Operations.Publish, caps.OperationsFor("sport/#"));
    }

    [Fact]
    public void Allows_PatternWithTokenClippedByKey_NeedsEveryLayer()
    {
        var key = Caps(("sport/*", Operations.Subscribe));
        var token = Capabilities.Intersect(Caps(("*", Operations.All)), key);
        Assert.False(token.Allows("sport/#", Operations.Subscribe));
        Assert.True(token.Allows("sport/+", Operations.Subscribe));

        var union = Capabilities.Intersect(Caps(("sport", Operations.Subscribe), ("sport/*", Operations.Subscribe)), Caps(("sport*", Operations.Subscribe)));
        Assert.True(union.Allows("sport/#", Operations.Subscribe));
        Assert.False(Capabilities.Intersect(Caps(("*", Operations.All)), Caps(("sport/*", Operations.Subscribe))).Allows("sport/#", Operations.Subscribe));
    }

    [Fact]
    public void Allows_PatternAgainstManyStarredGlobs_StaysFast()
    {
        // Many globs with several stars each: the walk is capped, and a cap reached refuses rather than allows.
        var caps = Capabilities.From(Enumerable.Range(0, 64).Select(i => new KeyValuePair<string, Operations>($"*{(char)('a' + (i % 26))}*{i}*/*", Operations.Subscribe)));
        var started = System.Diagnostics.Stopwatch.StartNew();
        Assert.False(caps.Allows("+/+/+/#", Operations.Subscribe));
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(5), $"took {started.Elapsed}");
    }

    [Fact]
    public void Allows_RandomPatternsAndGlobs_AgreeWithEveryShortChannel()
    {
        // Small alphabet, every channel up to 6 characters: a pattern judged covered has no uncovered channel among
        // them, and one judged uncovered shows a short channel that proves it (seeded: the same cases every run).
        var random = new Random(20240611);
        var channels = ShortChannels("ab/c", 6);
        var (covered, uncoveredCases) = (0, 0);
        for (var i = 0; i < 1000; i++)
        {
            var globs = Enumerable.Range(0, random.Next(1, 4)).Select(_ => RandomText(random, "ab/*", random.Next(1, 5))).ToArray();
            var pattern = RandomPattern(random);
            if (channels.FirstOrDefault(c => Matches(pattern, c)) is not { Length: <= 4 })
            {
                // Its shortest channel leaves too little room within 6 characters to show what it matches.
                continue;
            }

            var caps = Capabilities.From(globs.Select(g => new KeyValuePair<string, Operations>(g, Operations.Subscribe)));
            var uncovered = channels.FirstOrDefault(c => Matches(pattern, c) && !globs.Any(g => Capabilities.GlobMatches(g, c)));
            Assert.True(caps.Allows(pattern, Operations.Subscribe) == (uncovered is null), $"pattern '{pattern}', globs [{string.Join(", ", globs)}], uncovered '{uncovered}'");
            _ = uncovered is null ? covered++ : uncoveredCases++;
        }

        // Both answers came up often enough to mean something.
        Assert.True(covered >= 30 && uncoveredCases >= 30, $"{covered} covered, {uncoveredCases} not");
    }

    private static string RandomText(Random random, string alphabet, int length) =>
        new([.. Enumerable.Range(0, length).Select(_ => alphabet[random.Next(alphabet.Length)])]);

    private static string RandomPattern(Random random)
    {
        var levels = Enumerable.Range(0, random.Next(1, 4)).Select(_ => random.Next(4) switch
        {
            0 => "+",
            _ => RandomText(random, "ab", random.Next(1, 3)),
        }).ToList();
        if (random.Next(3) == 0)
        {
            levels.Add("#");
        }

        return string.Join('/', levels);
    }

    private static List<string> ShortChannels(string alphabet, int maxLength)
    {
        var all = new List<string>();
        var level = new List<string> { string.Empty };
        for (var length = 1; length <= maxLength; length++)
        {
            level = [.. level.SelectMany(prefix => alphabet.Select(c => prefix + c))];
            all.AddRange(level.Where(static c => Relay.Core.Channels.ChannelName.IsValidName(c, out _)));
        }

        return all;
    }

    // MQTT matching as the pattern index does it: '+' one level, a last '#' the levels before it and any after.
    private static bool Matches(string pattern, string channel)
    {
        var p = pattern.Split('/');
        var c = channel.Split('/');
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

    [Fact]
    public void OperationsFor_SeveralMatchingGlobs_UnionsTheirOperations()
    {
        var caps = Caps(("chat:*", Operations.Subscribe), ("chat:lobby", Operations.Publish), ("*", Operations.History), ("news:*", Operations.Presence));
        Assert.Equal(Operations.Subscribe | Operations.Publish | Operations.History, caps.OperationsFor("chat:lobby"));
        Assert.Equal(Operations.Subscribe | Operations.History, caps.OperationsFor("chat:other"));
        Assert.Equal(Operations.History, caps.OperationsFor("misc"));
    }

    [Fact]
    public void OperationsFor_NoGlobMatches_IsNone()
    {
        var caps = Caps(("chat:*", Operations.All));
        Assert.Equal(Operations.None, caps.OperationsFor("news:today"));
        Assert.Equal(Operations.None, Capabilities.None.OperationsFor("chat:lobby"));
        Assert.Equal(Operations.All, Capabilities.AllowAll.OperationsFor("chat:lobby"));
    }

    [Fact]
    public void Allows_EveryRequestedOperation_MustBeGranted()
    {
        var caps = Caps(("chat:*", Operations.Subscribe | Operations.Publish));
        Assert.True(caps.Allows("chat:a", Operations.Subscribe));
        Assert.True(caps.Allows("chat:a", Operations.Subscribe | Operations.Publish));
        Assert.False(caps.Allows("chat:a", Operations.Subscribe | Operations.History));
        Assert.False(caps.Allows("chat:a", Operations.Presence));
        Assert.False(caps.Allows("news:a", Operations.Subscribe));
    }

    [Fact]
    public void Intersect_TokenCapabilities_AreClippedByTheKeys()
    {
        var token = Caps(("*", Operations.All));
        var key = Caps(("chat:*", Operations.Subscribe | Operations.Publish), ("news:*", Operations.Subscribe));
        var effective = Capabilities.Intersect(token, key);

        Assert.Equal(Operations.Subscribe | Operations.Publish, effective.OperationsFor("chat:lobby"));
        Assert.Equal(Operations.Subscribe, effective.OperationsFor("news:today"));
        Assert.Equal(Operations.None, effective.OperationsFor("secret"));
        Assert.False(effective.Allows("chat:lobby", Operations.History));
    }

    [Fact]
    public void Intersect_KeyWiderThanToken_KeepsTheTokensLimits()
    {
        var token = Caps(("chat:lobby", Operations.Subscribe));
        var effective = Capabilities.Intersect(token, Caps(("*", Operations.All)));
        Assert.Equal(Operations.Subscribe, effective.OperationsFor("chat:lobby"));
        Assert.Equal(Operations.None, effective.OperationsFor("chat:other"));
        Assert.Same(token, Capabilities.Intersect(token, Capabilities.AllowAll));
    }

    [Fact]
    public void Intersect_Entries_ListTheRequestedGlobsOnly()
    {
        var token = Caps(("*", Operations.Subscribe));
        var effective = Capabilities.Intersect(token, Caps(("chat:*", Operations.All)));
        var entry = Assert.Single(effective.Entries);
        Assert.Equal("*", entry.Key);
        Assert.Equal("""{"*":["subscribe"]}""", effective.ToJson());
    }

    [Fact]
    public void IsSubsetOf_NarrowerGlobs_AreSubsets()
    {
        var all = Caps(("*", Operations.All));
        var chat = Caps(("chat:*", Operations.All));
        var chatA = Caps(("chat:a*", Operations.Subscribe));

        Assert.True(chat.IsSubsetOf(all));
        Assert.False(all.IsSubsetOf(chat));
        Assert.True(chatA.IsSubsetOf(chat));
        Assert.False(chat.IsSubsetOf(chatA));
        Assert.True(Capabilities.None.IsSubsetOf(chatA));
        Assert.True(chat.IsSubsetOf(Capabilities.AllowAll));
    }

    [Fact]
    public void IsSubsetOf_MoreOperationsThanGranted_IsNotASubset()
    {
        var key = Caps(("chat:*", Operations.Subscribe));
        Assert.True(Caps(("chat:lobby", Operations.Subscribe)).IsSubsetOf(key));
        Assert.False(Caps(("chat:lobby", Operations.Subscribe | Operations.Publish)).IsSubsetOf(key));
    }

    [Fact]
    public void IsSubsetOf_OperationsFromSeveralCoveringGlobs_AreUnioned()
    {
        var key = Caps(("chat:*", Operations.Subscribe), ("*", Operations.History));
        Assert.True(Caps(("chat:lobby", Operations.Subscribe | Operations.History)).IsSubsetOf(key));
        Assert.False(Caps(("news:x", Operations.Subscribe | Operations.History)).IsSubsetOf(key));
    }

    [Fact]
    public void TryParse_ValidObject_ReadsGlobsAndOperations()
    {
        using var doc = JsonDocument.Parse("""{"chat:*":["subscribe","publish"],"news:*":["history"],"admin":["*"],"none":[]}""");
        Assert.True(Capabilities.TryParse(doc.RootElement, out var caps, out var error), error);
        Assert.Equal(string.Empty, error);
        Assert.Equal(
            [
                new("chat:*", Operations.Subscribe | Operations.Publish),
                new("news:*", Operations.History),
                new("admin", Operations.All),
                new KeyValuePair<string, Operations>("none", Operations.None),
            ],
            caps.Entries);
        Assert.Equal(Operations.Subscribe | Operations.Publish, caps.OperationsFor("chat:x"));
    }

    [Theory]
    [InlineData("[]")]
    [InlineData("\"*\"")]
    [InlineData("null")]
    [InlineData("42")]
    public void TryParse_NotAnObject_FailsWithReason(string json)
    {
        using var doc = JsonDocument.Parse(json);
        Assert.False(Capabilities.TryParse(doc.RootElement, out var caps, out var error));
        Assert.Equal("capabilities must be a JSON object mapping channel globs to lists of operations", error);
        Assert.Same(Capabilities.None, caps);
    }

    [Theory]
    [InlineData("""{"chat:*":"subscribe"}""")]
    [InlineData("""{"chat:*":{"subscribe":true}}""")]
    [InlineData("""{"chat:*":null}""")]
    public void TryParse_OperationsNotAnArray_FailsNamingTheGlob(string json)
    {
        using var doc = JsonDocument.Parse(json);
        Assert.False(Capabilities.TryParse(doc.RootElement, out _, out var error));
        Assert.Equal("capability 'chat:*' must list its operations in an array", error);
    }

    [Theory]
    [InlineData("""{"chat:*":["subscribe","delete"]}""", "\"delete\"")]
    [InlineData("""{"chat:*":["Subscribe"]}""", "\"Subscribe\"")]
    [InlineData("""{"chat:*":[1]}""", "1")]
    [InlineData("""{"chat:*":[null]}""", "null")]
    public void TryParse_UnknownOperation_FailsNamingItAndTheChoices(string json, string shown)
    {
        using var doc = JsonDocument.Parse(json);
        Assert.False(Capabilities.TryParse(doc.RootElement, out _, out var error));
        Assert.Equal($"capability 'chat:*' lists an unknown operation {shown}; use subscribe, publish, presence, history or *", error);
    }

    [Fact]
    public void TryParse_EmptyOrTooLongGlob_Fails()
    {
        using var empty = JsonDocument.Parse("""{"":["subscribe"]}""");
        Assert.False(Capabilities.TryParse(empty.RootElement, out _, out var error));
        Assert.Equal("a capability glob must be 1-255 UTF-8 bytes", error);
        using var tooLong = JsonDocument.Parse($$"""{"{{new string('a', 256)}}":["subscribe"]}""");
        Assert.False(Capabilities.TryParse(tooLong.RootElement, out _, out _));
    }

    [Fact]
    public void Parse_InvalidJsonOrShape_ThrowsFormatException()
    {
        var syntax = Assert.Throws<FormatException>(() => Capabilities.Parse("{not json"));
        Assert.StartsWith("capabilities are not valid JSON", syntax.Message, StringComparison.Ordinal);
        var shape = Assert.Throws<FormatException>(() => Capabilities.Parse("""{"a":["fly"]}"""));
        Assert.Contains("unknown operation \"fly\"", shape.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ToJson_ThenParse_RoundTrips()
    {
        var original = Caps(("chat:*", Operations.Subscribe | Operations.Presence), ("日本:+#", Operations.All), ("\"quoted\"", Operations.History), ("none", Operations.None));
        var json = original.ToJson();
        var parsed = Capabilities.Parse(json);
        Assert.Equal(original.Entries, parsed.Entries);
        Assert.Equal(json, parsed.ToJson());
    }

    [Fact]
    public void ToJson_WritesOperationNamesInFixedOrder()
    {
        var caps = Capabilities.Parse("""{"a":["history","subscribe"],"b":["*"]}""");
        Assert.Equal("""{"a":["subscribe","history"],"b":["subscribe","publish","presence","history"]}""", caps.ToJson());
        Assert.Equal(caps.ToJson(), caps.ToString());
    }

    [Fact]
    public void IsSubsetOf_ClippedOther_RespectsItsCeiling()
    {
        var clipped = Capabilities.Intersect(Caps(("*", Operations.All)), Caps(("chat:*", Operations.Subscribe)));
        Assert.False(Caps(("secret", Operations.Publish)).IsSubsetOf(clipped));
        Assert.True(Caps(("chat:a", Operations.Subscribe)).IsSubsetOf(clipped));
    }

    [Fact]
    public void Intersect_Chained_KeepsEveryCeiling()
    {
        var once = Capabilities.Intersect(Caps(("*", Operations.All)), Caps(("chat:*", Operations.Subscribe)));
        var twice = Capabilities.Intersect(once, Caps(("*", Operations.Subscribe | Operations.Publish)));
        Assert.False(twice.Allows("secret", Operations.Publish));
        Assert.False(twice.Allows("chat:a", Operations.Publish));
        Assert.True(twice.Allows("chat:a", Operations.Subscribe));
    }

    [Fact]
    public void IsSubsetOf_ClippedToTheKey_IsASubsetOfTheKey()
    {
        var key = Caps(("chat:*", Operations.Subscribe));
        Assert.True(Capabilities.Intersect(Caps(("*", Operations.All)), key).IsSubsetOf(key));
    }

    [Fact]
    public void TryParse_GlobOver255Utf8Bytes_IsRefused()
    {
        Assert.Throws<FormatException>(() => Capabilities.Parse($$"""{"{{new string('é', 128)}}":["subscribe"]}"""));
    }
}

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

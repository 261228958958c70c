using System.Text;
using Relay.Core.Channels;

namespace Relay.Core.Tests.Channels;

public sealed class ChannelNameTests
{
    [Theory]
    [InlineData("a")]
    [InlineData("chat:lobby")]
    [InlineData("sport/football/scores")]
    [InlineData("a b/c-d_e.f:g@h")]
    [InlineData("日本語/チャンネル")]
    [InlineData("emoji/😀")]
    public void IsValidName_OrdinaryNames_AreValid(string name)
    {
        Assert.True(ChannelName.IsValidName(name, out var error), error);
        Assert.Equal(string.Empty, error);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    public void IsValidName_NullOrEmpty_IsInvalid(string? name)
    {
        Assert.False(ChannelName.IsValidName(name, out var error));
        Assert.Contains("empty", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("a+")]
    [InlineData("+")]
    [InlineData("a/#")]
    [InlineData("#")]
    [InlineData("chat:*")]
    [InlineData("a/+/b")]
    public void IsValidName_Wildcards_AreInvalidAndPointToPatterns(string name)
    {
        Assert.False(ChannelName.IsValidName(name, out var error));
        Assert.Equal("channel name must not contain '+', '#' or '*'; use a pattern subscription for wildcards", error);
    }

    [Theory]
    [InlineData("a//b", 2)]
    [InlineData("a/", 2)]
    [InlineData("a/b//", 4)]
    public void IsValidName_EmptyLevel_IsInvalidWithPosition(string name, int position)
    {
        Assert.False(ChannelName.IsValidName(name, out var error));
        Assert.Contains($"empty level at position {position}", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("/a")]
    [InlineData("/")]
    public void IsValidName_LeadingSlash_IsInvalid(string name)
    {
        Assert.False(ChannelName.IsValidName(name, out var error));
        Assert.Contains("must not start with '/'", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("/a")]
    [InlineData("/")]
    [InlineData("a//b")]
    [InlineData("a/")]
    [InlineData("//")]
    [InlineData("$SYS/broker")]
    public void IsValidTopicName_EmptyLevels_AreValidForMqttButNotForTheProtocol(string topic)
    {
        Assert.True(ChannelName.IsValidTopicName(topic, out var error), error);
        Assert.True(ChannelName.IsValidTopicFilter(topic, out error), error);
        Assert.Equal(topic.StartsWith('$'), ChannelName.IsValidName(topic, out _));
    }

    [Theory]
    [InlineData("/#")]
    [InlineData("+/+")]
    [InlineData("/+")]
    [InlineData("a//+/#")]
    public void IsValidTopicFilter_EmptyLevelsAroundWildcards_AreValid(string filter)
    {
        Assert.True(ChannelName.IsValidTopicFilter(filter, out var error), error);
        Assert.False(ChannelName.IsValidTopicName(filter, out error));
        Assert.StartsWith("topic name must not contain", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("", "topic name is required")]
    [InlineData("a/#/b", "'#' in a topic filter must be the whole last level")]
    [InlineData("a/b+", "'+' in a topic filter must be a whole level")]
    [InlineData("a/*", "topic filter must not contain '*'")]
    [InlineData("a\u0000b", "control characters")]
    public void IsValidTopicNameOrFilter_OtherRules_StillApply(string value, string expected)
    {
        var filter = expected.Contains("filter", StringComparison.Ordinal);
        var valid = filter ? ChannelName.IsValidTopicFilter(value, out var error) : ChannelName.IsValidTopicName(value, out error);
        Assert.False(valid);
        Assert.Contains(expected, error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("a\u0000b", "U+0000")]
    [InlineData("a\nb", "U+000A")]
    [InlineData("\u001F", "U+001F")]
    [InlineData("a\u007F", "U+007F")]
    [InlineData("a\u0080", "U+0080")]
    [InlineData("a\u009F", "U+009F")]
    public void IsValidName_ControlCharacter_IsInvalidAndNamed(string name, string codePoint)
    {
        Assert.False(ChannelName.IsValidName(name, out var error));
        Assert.Contains("control characters", error, StringComparison.Ordinal);
        Assert.Contains(codePoint, error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("\u00A0")] // first code point after C1: a no-break space is printable
    [InlineData("~")]
    public void IsValidName_NeighboursOfControlRanges_AreValid(string name) =>
        Assert.True(ChannelName.IsValidName(name, out _));

    // Built at run time: attribute arguments are stored as UTF-8, which turns a lone surrogate into U+FFFD.
    [Theory]
    [InlineData("a", 0xD800, "")]
    [InlineData("", 0xDC00, "a")]
    [InlineData("a", 0xDBFF, "b")]
    [InlineData("😀", 0xDE00, "")]
    public void IsValidName_UnpairedSurrogate_IsInvalidUtf8(string before, int surrogate, string after)
    {
        var name = before + (char)surrogate + after;
        Assert.False(ChannelName.IsValidName(name, out var error));
        Assert.Contains("valid UTF-8", error, StringComparison.Ordinal);
    }

    [Fact]
    public void IsValidName_255AsciiBytes_IsValid() =>
        Assert.True(ChannelName.IsValidName(new string('a', 255), out _));

    [Fact]
    public void IsValidName_256AsciiBytes_IsInvalid()
    {
        Assert.False(ChannelName.IsValidName(new string('a', 256), out var error));
        Assert.Contains("256 bytes", error, StringComparison.Ordinal);
        Assert.Contains("255", error, StringComparison.Ordinal);
    }

    [Fact]
    public void IsValidName_255BytesOfMultiByteCharacters_IsValid()
    {
        // 85 three-byte characters: 85 chars, 255 bytes.
        var name = new string('€', 85);
        Assert.Equal(255, Encoding.UTF8.GetByteCount(name));
        Assert.True(ChannelName.IsValidName(name, out var error), error);
    }

    [Fact]
    public void IsValidName_256BytesInFewerThan256Chars_IsInvalid()
    {
        // 85 three-byte characters plus one ASCII: 86 chars but 256 bytes, so counting chars would wrongly accept it.
        var name = new string('€', 85) + "a";
        Assert.Equal(256, Encoding.UTF8.GetByteCount(name));
        Assert.False(ChannelName.IsValidName(name, out var error));
        Assert.Contains("256 bytes", error, StringComparison.Ordinal);
    }

    [Fact]
    public void IsValidName_SurrogatePairsCountAsFourBytes()
    {
        // 63 four-byte emoji (126 chars) are 252 bytes; three more ASCII bytes reach 255, a fourth passes the limit.
        var emoji = string.Concat(Enumerable.Repeat("😀", 63));
        Assert.True(ChannelName.IsValidName(emoji + "abc", out var error), error);
        Assert.False(ChannelName.IsValidName(emoji + "abcd", out _));
    }

    [Fact]
    public void IsValidName_TwoByteCharactersAtTheLimit_AreCountedAsTwo()
    {
        Assert.True(ChannelName.IsValidName(new string('é', 127) + "a", out _));
        Assert.False(ChannelName.IsValidName(new string('é', 128), out _));
    }

    [Theory]
    [InlineData("a")]
    [InlineData("+")]
    [InlineData("#")]
    [InlineData("+/+")]
    [InlineData("sport/#")]
    [InlineData("sport/+/scores")]
    [InlineData("+/#")]
    [InlineData("chat:lobby/+")]
    public void IsValidPattern_WildcardsAsWholeLevels_AreValid(string pattern)
    {
        Assert.True(ChannelName.IsValidPattern(pattern, out var error), error);
        Assert.Equal(string.Empty, error);
    }

    [Theory]
    [InlineData("a+/b")]
    [InlineData("a/+b")]
    [InlineData("a/b+")]
    [InlineData("++")]
    [InlineData("chat:+")]
    public void IsValidPattern_PlusInsideALevel_IsInvalid(string pattern)
    {
        Assert.False(ChannelName.IsValidPattern(pattern, out var error));
        Assert.Contains("'+' in a channel pattern must be a whole level", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("#/a")]
    [InlineData("a/#/b")]
    [InlineData("a#")]
    [InlineData("a/b#")]
    [InlineData("a/#b")]
    [InlineData("##")]
    public void IsValidPattern_HashNotTheWholeLastLevel_IsInvalid(string pattern)
    {
        Assert.False(ChannelName.IsValidPattern(pattern, out var error));
        Assert.Contains("'#' in a channel pattern must be the whole last level", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("*")]
    [InlineData("chat:*")]
    [InlineData("a/*/b")]
    public void IsValidPattern_Star_IsNeverAllowed(string pattern)
    {
        Assert.False(ChannelName.IsValidPattern(pattern, out var error));
        Assert.Contains("must not contain '*'", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("+//#")]
    [InlineData("/+")]
    [InlineData("+/")]
    [InlineData("#/")]
    public void IsValidPattern_EmptyLevel_IsInvalid(string pattern) =>
        Assert.False(ChannelName.IsValidPattern(pattern, out _));

    [Fact]
    public void IsValidPattern_LengthAndControlRules_StillApply()
    {
        Assert.True(ChannelName.IsValidPattern(new string('é', 126) + "/#", out _));
        Assert.False(ChannelName.IsValidPattern(new string('é', 127) + "/#", out var tooLong));
        Assert.Contains("256 bytes", tooLong, StringComparison.Ordinal);
        Assert.False(ChannelName.IsValidPattern("a\t/+", out var control));
        Assert.Contains("control characters", control, StringComparison.Ordinal);
        Assert.False(ChannelName.IsValidPattern(null, out _));
        Assert.False(ChannelName.IsValidPattern("", out _));
    }

    [Theory]
    [InlineData("+", true)]
    [InlineData("#", true)]
    [InlineData("a/+", true)]
    [InlineData("+/b", true)]
    [InlineData("a/#", true)]
    [InlineData("a/+/c", true)]
    [InlineData("a", false)]
    [InlineData("a+", false)]
    [InlineData("a/b#", false)]
    [InlineData("c++/x", false)]
    [InlineData("", false)]
    [InlineData("/", false)]
    public void IsPattern_WholeWildcardLevel_IsAPattern(string value, bool expected) =>
        Assert.Equal(expected, ChannelName.IsPattern(value));

    [Theory]
    [InlineData("chat:lobby", "chat")]
    [InlineData("chat:room:1", "chat")]
    [InlineData("a/b:c", "a/b")]
    [InlineData("lobby", "")]
    [InlineData(":x", "")]
    [InlineData("chat:", "chat")]
    public void NamespaceOf_TextBeforeFirstColon_IsTheNamespace(string channel, string expected) =>
        Assert.Equal(expected, ChannelName.NamespaceOf(channel));
}

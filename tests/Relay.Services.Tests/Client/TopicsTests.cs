using Relay.Client;

namespace Relay.Services.Tests.Client;

public sealed class TopicsTests
{
    [Theory]
    [InlineData("chat/+", "chat/a", true)]
    [InlineData("chat/+", "chat/a/b", false)]
    [InlineData("chat/+", "chat", false)]
    [InlineData("chat/+", "other/a", false)]
    [InlineData("+/+", "a/b", true)]
    [InlineData("chat/#", "chat", true)]
    [InlineData("chat/#", "chat/a/b/c", true)]
    [InlineData("chat/#", "chatter/a", false)]
    [InlineData("#", "anything/at/all", true)]
    [InlineData("a/+/c", "a/b/c", true)]
    [InlineData("a/+/c", "a/b/d", false)]
    public void Matches_PatternAndChannel_FollowsMqttRules(string pattern, string channel, bool expected) =>
        Assert.Equal(expected, Topics.Matches(pattern, channel));
}

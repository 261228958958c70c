using Microsoft.Extensions.Options;
using Relay.Testing;

namespace Relay.Services.Tests;

/// <summary>Ingress settings that cannot work stop the host at start-up, saying what to set instead.</summary>
public sealed class IngressOptionsTests
{
    [Fact]
    public async Task SendQueueFrames_WhichWasReplaced_StopsTheHost_NamingSendQueueBytes()
    {
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Ingress:SendQueueFrames"] = "1024" }));
        Assert.Contains("Relay:Ingress:SendQueueFrames", failure.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Ingress:SendQueueBytes", failure.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("true")]
    [InlineData("false")]
    public async Task LeanWebSockets_WhichWasRemoved_StopsTheHost_NamingOwnTransport(string value)
    {
        // Either value: the connection-middleware path it switched is gone; OwnTransport=false is what "false" meant now.
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Ingress:LeanWebSockets"] = value }));
        Assert.Contains("Relay:Ingress:LeanWebSockets", failure.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Ingress:OwnTransport=false", failure.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("true")]
    [InlineData("false")]
    public async Task DirectSocketSends_WhichWasRemoved_StopsTheHost_NamingOwnTransport(string value)
    {
        // Either value: the output pipe it chose is gone, and a host that silently ignored it would not do what was asked.
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Ingress:DirectSocketSends"] = value }));
        Assert.Contains("Relay:Ingress:DirectSocketSends", failure.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Ingress:OwnTransport", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SendQueueBytes_TooSmallForOneHistoryPageAndOneMessage_StopsTheHost()
    {
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Ingress:SendQueueBytes"] = "1048576",
            ["Relay:Ingress:HistoryPageBytes"] = "1048576",
        }));
        Assert.Contains("Relay:Ingress:SendQueueBytes is 1048576", failure.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("-00:00:01")]
    [InlineData("02:00:00")]
    public async Task QuietCheckAfter_OutOfRange_StopsTheHost_SayingWhatWorks(string value)
    {
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Ingress:QuietCheckAfter"] = value }));
        Assert.Contains("Relay:Ingress:QuietCheckAfter", failure.Message, StringComparison.Ordinal);
        Assert.Contains("00:00:00 (no check)", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NodeFollowingTheAuthService_WithoutAuthUrl_StopsTheHost_NamingAuthUrl()
    {
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Auth:KeySource"] = "redis" }));
        Assert.Contains("Relay:Ingress:AuthUrl is not set", failure.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("auth:8081")]
    [InlineData("ftp://auth/")]
    [InlineData("http://auth:8081/?x=1")]
    public async Task AuthUrl_NotAnHttpBaseUrl_StopsTheHost(string url)
    {
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Auth:KeySource"] = "redis",
            ["Relay:Ingress:AuthUrl"] = url,
        }));
        Assert.Contains($"Relay:Ingress:AuthUrl is '{url}'", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AuthUrl_OnAHostThatIssuesTokensItself_StopsTheHost()
    {
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Ingress:AuthUrl"] = "http://127.0.0.1:1/" }));
        Assert.Contains("Relay:Auth:KeySource is not 'redis'", failure.Message, StringComparison.Ordinal);
    }
}

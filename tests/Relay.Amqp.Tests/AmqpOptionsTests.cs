using Microsoft.Extensions.Options;
using Relay.Testing;

namespace Relay.Amqp.Tests;

/// <summary><c>Relay:Amqp</c> is checked when the host starts, with messages that say what to write.</summary>
public sealed class AmqpOptionsTests
{
    [Theory]
    [InlineData("Relay:Amqp:Exchange", "relay.out", "Relay:Amqp:Uri is required")]
    [InlineData("Relay:Amqp:Queue", "relay-in", "Relay:Amqp:App is required")]
    [InlineData("Relay:Amqp:Exchange", "no spaces", "is not an AMQP name")]
    [InlineData("Relay:Amqp:OutboundChannels:0", "feed/#/x", "Relay:Amqp:OutboundChannels holds 'feed/#/x'")]
    [InlineData("Relay:Amqp:RoutingKey", "{tenant}.{channel}", "may hold only text and the placeholders")]
    [InlineData("Relay:Amqp:OutboundQueueBytes", "1000", "Relay:Amqp:OutboundQueueBytes must be at least 1048576")]
    [InlineData("Relay:Amqp:Prefetch", "0", "Relay:Amqp:Prefetch must be between 1 and 65535")]
    [InlineData("Relay:Amqp:DeadLetterExchange", "dlx", "set Relay:Amqp:Queue too")]
    public async Task Start_BadAmqpSetting_FailsNamingTheSetting(string key, string value, string message)
    {
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(new Dictionary<string, string?> { [key] = value }));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_InboundExchangeIsTheOutboundExchange_FailsSayingWhy()
    {
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Amqp:Uri"] = "amqp://guest:secret@127.0.0.1:9/",
            ["Relay:Amqp:App"] = RelayServer.AppId,
            ["Relay:Amqp:Exchange"] = "relay",
            ["Relay:Amqp:Queue"] = "relay-in",
            ["Relay:Amqp:InboundExchange"] = "relay",
        }));
        Assert.Contains("would come back into its channel", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("secret", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_NothingConfigured_StartsWithoutABroker()
    {
        await using var server = await RelayServer.StartAsync();
        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
        Assert.True((await http.GetAsync(new Uri("healthz", UriKind.Relative))).IsSuccessStatusCode);
    }
}

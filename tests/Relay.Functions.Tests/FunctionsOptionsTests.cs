using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Relay.Bus;
using Relay.Bus.Routing;
using Relay.Routing.Channels;
using Relay.Testing;

namespace Relay.Functions.Tests;

/// <summary><c>Relay:Functions</c> is checked when the host starts; with nothing configured, nothing is wrapped.</summary>
public sealed class FunctionsOptionsTests
{
    [Theory]
    [InlineData("Relay:Functions:Namespaces:chat:BeforePublish:Target", "ftp://hooks", "is neither an http(s) URL nor lambda:<function-arn>")]
    [InlineData("Relay:Functions:Defaults:AfterPublish:Target", "lambda:not-an-arn", "is not lambda:<function-arn>")]
    [InlineData("Relay:Functions:Namespaces:chat:BeforePublish:Timeout", "00:05:00", "Relay:Functions:Namespaces:chat:BeforePublish:Timeout must be between")]
    [InlineData("Relay:Functions:Namespaces:a#b:BeforePublish:Target", "http://127.0.0.1:9/", "Relay:Functions:Namespaces:a#b is not a namespace name")]
    [InlineData("Relay:Functions:Webhooks:0:Url", "http://127.0.0.1:9/", "Relay:Functions:Webhooks:0:Secret must be at least 16 characters")]
    [InlineData("Relay:Functions:MaxAttempts", "0", "Relay:Functions:MaxAttempts must be between 1 and 100")]
    public async Task Start_BadFunctionsSetting_FailsNamingTheSetting(string key, string value, string message)
    {
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(new Dictionary<string, string?> { [key] = value }));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_WebhookAsksForAnUnknownEvent_FailsListingTheKnownOnes()
    {
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Functions:Webhooks:0:Url"] = "http://127.0.0.1:9/",
            ["Relay:Functions:Webhooks:0:Secret"] = "0123456789abcdef",
            ["Relay:Functions:Webhooks:0:Events:0"] = "channel.exploded",
        }));
        Assert.Contains("'channel.occupied', 'channel.vacated', 'presence' or 'message'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_NothingConfigured_AuthorityAndBusAreServedUnwrapped()
    {
        // No hook: publishes reach routing's own authority with no extra call, await or allocation; no occupancy
        // webhook: fan-out talks to the bus itself.
        await using var server = await RelayServer.StartAsync();
        Assert.IsType<ChannelAuthority>(server.Services.GetRequiredService<IChannelAuthority>());
        Assert.IsType<Relay.Bus.InMemory.InMemoryBus>(server.Services.GetRequiredService<IRelayBus>());
    }

    [Fact]
    public async Task Start_HookForOneNamespace_AuthorityIsWrapped()
    {
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Functions:Namespaces:chat:BeforePublish:Target"] = "http://127.0.0.1:9/",
        });
        Assert.Equal("HookedChannelAuthority", server.Services.GetRequiredService<IChannelAuthority>().GetType().Name);
    }
}

namespace Relay.Functions.Tests;

/// <summary>Webhooks over the in-memory bus (the standalone default).</summary>
public sealed class WebhookTests : WebhookSpec
{
    private protected override Task<Dictionary<string, string?>> BusSettingsAsync() => Task.FromResult(new Dictionary<string, string?>());
}

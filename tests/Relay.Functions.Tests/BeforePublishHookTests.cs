namespace Relay.Functions.Tests;

/// <summary>The before-publish hook over the in-memory bus (the standalone default).</summary>
public sealed class BeforePublishHookTests : BeforePublishHookSpec
{
    private protected override Task<Dictionary<string, string?>> BusSettingsAsync() => Task.FromResult(new Dictionary<string, string?>());
}

using Xunit.Abstractions;

namespace Relay.Services.Tests.Hostile;

/// <summary>Relay's own transport: upgrades taken at accept.</summary>
[Collection(nameof(HostileCollection))]
public sealed class WebSocketFuzzOwnTransportTests(ITestOutputHelper output) : WebSocketFuzzSpec(output)
{
    protected override void Configure(IDictionary<string, string?> settings)
    {
    }
}

using Xunit.Abstractions;

namespace Relay.Services.Tests.Hostile;

/// <summary>ASP.NET Core's WebSocket (Relay's own transport off).</summary>
[Collection(nameof(HostileCollection))]
public sealed class WebSocketFuzzFrameworkTests(ITestOutputHelper output) : WebSocketFuzzSpec(output)
{
    protected override void Configure(IDictionary<string, string?> settings) => settings["Relay:Ingress:OwnTransport"] = "false";
}

namespace Relay.Services.Tests.Realtime;

/// <summary>The same when lean WebSockets send through the transport's output pipe instead of the socket.</summary>
[Collection(nameof(SendPathTests))]
public sealed class PipeSendPathTests : SendPathSpec
{
    protected override void Configure(Dictionary<string, string?> settings) => settings["Relay:Ingress:DirectSocketSends"] = "false";
}

namespace Relay.Services.Tests.Realtime;

/// <summary>The same budget when lean WebSockets send through the transport's output pipe instead of the socket.</summary>
[Collection(nameof(LimitsTests))]
public sealed class PipeSendBudgetTests : SendBudgetSpec
{
    protected override void Configure(Dictionary<string, string?> settings) => settings["Relay:Ingress:DirectSocketSends"] = "false";
}

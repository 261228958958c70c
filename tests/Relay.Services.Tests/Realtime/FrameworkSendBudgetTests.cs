namespace Relay.Services.Tests.Realtime;

/// <summary>The same budget when ASP.NET Core's WebSocket serves the connection (every frame goes through the queue).</summary>
[Collection(nameof(LimitsTests))]
public sealed class FrameworkSendBudgetTests : SendBudgetSpec
{
    protected override void Configure(Dictionary<string, string?> settings) => settings["Relay:Ingress:OwnTransport"] = "false";
}

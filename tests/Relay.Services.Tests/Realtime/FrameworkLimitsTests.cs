namespace Relay.Services.Tests.Realtime;

/// <summary>The same limits when ASP.NET Core's WebSocket serves the connection (its sender queues every frame).</summary>
[Collection(nameof(LimitsTests))]
public sealed class FrameworkLimitsTests : LimitsSpec
{
    protected override void Configure(Dictionary<string, string?> settings) => settings["Relay:Ingress:OwnTransport"] = "false";
}

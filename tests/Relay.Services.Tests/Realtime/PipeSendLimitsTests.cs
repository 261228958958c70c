namespace Relay.Services.Tests.Realtime;

/// <summary>The same limits when lean WebSockets send through the transport's output pipe instead of the socket.</summary>
[Collection(nameof(LimitsTests))]
public sealed class PipeSendLimitsTests : LimitsSpec
{
    protected override void Configure(Dictionary<string, string?> settings) => settings["Relay:Ingress:DirectSocketSends"] = "false";
}

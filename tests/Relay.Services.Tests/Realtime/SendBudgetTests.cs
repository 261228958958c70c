namespace Relay.Services.Tests.Realtime;

[Collection(nameof(LimitsTests))]
public sealed class SendBudgetTests : SendBudgetSpec;

using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary><see cref="SendBudgetSpec"/> over the Dapr bus, the stand-in delivering each message once, in order.</summary>
[Collection(nameof(LimitsTests))]
public sealed class SendBudgetDaprTests(DaprBusFixture dapr) : SendBudgetSpec, IClassFixture<DaprBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => dapr.AddTo(settings);

    protected override Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings) => dapr.StartServerAsync(settings);
}

/// <summary><see cref="SendBudgetSpec"/> over the Dapr bus, the stand-in posting every delivery twice and shuffling deliveries within 8.</summary>
[Collection(nameof(LimitsTests))]
public sealed class SendBudgetDaprRedeliveringTests(DaprRedeliveringBusFixture dapr) : SendBudgetSpec, IClassFixture<DaprRedeliveringBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => dapr.AddTo(settings);

    protected override Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings) => dapr.StartServerAsync(settings);
}

using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary><see cref="PresenceLimitsSpec"/> over the Dapr bus, the stand-in delivering each message once, in order.</summary>
public sealed class PresenceLimitsDaprTests(DaprBusFixture dapr) : PresenceLimitsSpec, IClassFixture<DaprBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => dapr.AddTo(settings);

    protected override Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings) => dapr.StartServerAsync(settings);
}

/// <summary><see cref="PresenceLimitsSpec"/> over the Dapr bus, the stand-in posting every delivery twice and shuffling deliveries within 8.</summary>
public sealed class PresenceLimitsDaprRedeliveringTests(DaprRedeliveringBusFixture dapr) : PresenceLimitsSpec, IClassFixture<DaprRedeliveringBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => dapr.AddTo(settings);

    protected override Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings) => dapr.StartServerAsync(settings);
}

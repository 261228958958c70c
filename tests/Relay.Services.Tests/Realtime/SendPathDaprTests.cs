using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary><see cref="SendPathSpec"/> over the Dapr bus, the stand-in delivering each message once, in order.</summary>
[Collection(nameof(SendPathTests))]
public sealed class SendPathDaprTests(DaprBusFixture dapr) : SendPathSpec, IClassFixture<DaprBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => dapr.AddTo(settings);

    protected override Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings) => dapr.StartServerAsync(settings);
}

/// <summary><see cref="SendPathSpec"/> over the Dapr bus, the stand-in posting every delivery twice and shuffling deliveries within 8.</summary>
[Collection(nameof(SendPathTests))]
public sealed class SendPathDaprRedeliveringTests(DaprRedeliveringBusFixture dapr) : SendPathSpec, IClassFixture<DaprRedeliveringBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => dapr.AddTo(settings);

    protected override Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings) => dapr.StartServerAsync(settings);
}

using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary><see cref="DeliveryPropertySpec"/> over the Dapr bus, the stand-in delivering each message once, in order.</summary>
public sealed class DeliveryPropertyDaprTests(DaprBusFixture dapr) : DeliveryPropertySpec, IClassFixture<DaprBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => dapr.AddTo(settings);

    protected override Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings) => dapr.StartServerAsync(settings);
}

/// <summary><see cref="DeliveryPropertySpec"/> over the Dapr bus, the stand-in posting every delivery twice and shuffling deliveries within 8.</summary>
public sealed class DeliveryPropertyDaprRedeliveringTests(DaprRedeliveringBusFixture dapr) : DeliveryPropertySpec, IClassFixture<DaprRedeliveringBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => dapr.AddTo(settings);

    protected override Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings) => dapr.StartServerAsync(settings);
}

using Relay.Testing;

namespace Relay.Services.Tests.Sse;

/// <summary><see cref="SseSpec"/> over the Dapr bus, the stand-in delivering each message once, in order.</summary>
public sealed class SseDaprTests(DaprBusFixture dapr) : SseSpec, IClassFixture<DaprBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => dapr.AddTo(settings);

    protected override Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings) => dapr.StartServerAsync(settings);
}

/// <summary><see cref="SseSpec"/> over the Dapr bus, the stand-in posting every delivery twice and shuffling deliveries within 8.</summary>
public sealed class SseDaprRedeliveringTests(DaprRedeliveringBusFixture dapr) : SseSpec, IClassFixture<DaprRedeliveringBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => dapr.AddTo(settings);

    protected override Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings) => dapr.StartServerAsync(settings);
}

using Microsoft.Extensions.DependencyInjection;
using Relay.Testing;

namespace Relay.Services.Tests.Http;

/// <summary><see cref="HttpRefusalSpec"/> over the Dapr bus, the stand-in delivering each message once, in order.</summary>
public sealed class HttpRefusalDaprTests(DaprBusFixture dapr) : HttpRefusalSpec, IClassFixture<DaprBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => dapr.AddTo(settings);

    protected override Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings, Action<IServiceCollection> services) => dapr.StartServerAsync(settings, services);
}

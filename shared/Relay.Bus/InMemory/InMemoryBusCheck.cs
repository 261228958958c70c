using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;

namespace Relay.Bus.InMemory;

/// <summary>
/// Stops a host whose configuration asks for another bus (<c>Relay:Bus</c>) but which registered only the in-memory one:
/// the services register <c>AddRelayBus()</c> themselves, and the host's own choice (<c>AddRedisWhenConfigured</c>) is
/// one line a new host could leave out, which would run each process alone, in memory, without a word.
/// </summary>
internal sealed class InMemoryBusCheck(IRelayBus bus, IConfiguration configuration) : IHostedService
{
    /// <summary>The setting that names the bus (read here only to refuse a mismatch).</summary>
    private const string BusKey = "Relay:Bus";

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var configured = configuration[BusKey];
        if (bus is InMemoryBus && !string.IsNullOrEmpty(configured) && !string.Equals(configured, "memory", StringComparison.OrdinalIgnoreCase))
        {
            throw new InvalidOperationException($"Relay:Bus is '{configured}' but this host registered only the in-memory bus: call services.AddRelayBus().AddRedisWhenConfigured(configuration) (Relay.Bus.Redis) in its Program.cs, or set Relay:Bus to 'memory'.");
        }

        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

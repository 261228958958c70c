using Relay.Bus.InMemory;

namespace Relay.Bus.Redis.Tests.Contract;

/// <summary>The contract on the in-memory bus: one instance, as the standalone host's services share it.</summary>
public sealed class InMemoryBusContractTests : RelayBusContract
{
    protected override Task<(IRelayBus Serving, IRelayBus Calling)> CreateBusesAsync()
    {
        var bus = new InMemoryBus();
        return Task.FromResult<(IRelayBus, IRelayBus)>((bus, bus));
    }

    protected override Task ReleaseBusesAsync() => Task.CompletedTask;
}

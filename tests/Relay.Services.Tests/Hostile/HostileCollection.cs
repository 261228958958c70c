namespace Relay.Services.Tests.Hostile;

/// <summary>
/// The fuzzers open hundreds of connections and send megabytes as fast as they can: they run alone, after every
/// parallel collection, so the tests that measure rates under load (the failover and reshard tests need 1,000
/// publishes a second) never share the machine with them.
/// </summary>
[CollectionDefinition(nameof(HostileCollection), DisableParallelization = true)]
public sealed class HostileCollection;

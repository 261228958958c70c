namespace Relay.Services.Tests.Realtime;

/// <summary>
/// The stalled-reader test measures the whole process's managed heap, so its classes run alone: after every
/// parallel collection, one at a time, with no other test's server allocating beside them.
/// </summary>
[CollectionDefinition(nameof(LimitsTests), DisableParallelization = true)]
public sealed class LimitsCollection;

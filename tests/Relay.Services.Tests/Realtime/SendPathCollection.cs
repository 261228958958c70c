namespace Relay.Services.Tests.Realtime;

/// <summary>
/// The send-path tests time what a busy channel does to a paused reader: their classes run one at a time, after the
/// parallel collections, so that one's load does not skew another's timing.
/// </summary>
[CollectionDefinition(nameof(SendPathTests), DisableParallelization = true)]
public sealed class SendPathCollection;

namespace Relay.Services.Tests.Realtime;

/// <summary>
/// The send-path tests time deliveries while a client floods the server with pings: their classes run one at a time,
/// after the parallel collections, so that a flood of one does not slow another's measurement. The small receive
/// window tests (Sending/SmallReceiveWindowTests) run here too, for the same reason.
/// </summary>
[CollectionDefinition(nameof(SendPathTests), DisableParallelization = true)]
public sealed class SendPathCollection;

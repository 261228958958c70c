namespace Relay.Client;

/// <summary>The server's acknowledgement of a publish: the message is sequenced and, where history is on, stored.</summary>
/// <param name="Channel">The channel.</param>
/// <param name="Seq">The message's sequence number in the channel (the first one's, when an idempotency key repeated).</param>
public sealed record PublishResult(string Channel, long Seq);

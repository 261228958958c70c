namespace Relay.Redis;

/// <summary>A pub/sub message: the channel it was published to, its payload, and the pattern that matched (PSUBSCRIBE) or null.</summary>
public readonly record struct RedisMessage(string Channel, ReadOnlyMemory<byte> Payload, string? Pattern);

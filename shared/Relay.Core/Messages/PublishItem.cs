namespace Relay.Core.Messages;

/// <summary>One message a client asks to publish, before it is sequenced.</summary>
/// <param name="Name">The event name, if any.</param>
/// <param name="Data">The payload bytes (UTF-8 JSON when <paramref name="DataIsJson"/>).</param>
/// <param name="DataIsJson">Whether the payload is JSON.</param>
/// <param name="Id">The idempotency key, if any.</param>
public readonly record struct PublishItem(string? Name, ReadOnlyMemory<byte> Data, bool DataIsJson, string? Id)
{
    /// <summary>The publish's MQTT 5 application properties, or null (only an MQTT publish sets them).</summary>
    public MessageProperties? Properties { get; init; }
}

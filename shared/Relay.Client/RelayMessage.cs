using System.Text.Json;

namespace Relay.Client;

/// <summary>A message delivered on a channel (the server's <c>message</c> push).</summary>
public sealed class RelayMessage
{
    /// <summary>The channel it was published on (for a pattern subscription, the concrete channel).</summary>
    public required string Channel { get; init; }

    /// <summary>Its position in the channel: increases by exactly 1 per message within an <see cref="Epoch"/>.</summary>
    public long Seq { get; init; }

    /// <summary>The channel's epoch; a new epoch means the channel's history was lost and messages may have been missed.</summary>
    public string? Epoch { get; init; }

    /// <summary>The publisher's idempotency key, when it gave one.</summary>
    public string? Id { get; init; }

    /// <summary>The event name, when the publisher gave one.</summary>
    public string? Name { get; init; }

    /// <summary>The payload. With <see cref="Encoding"/> <c>base64</c> it is a JSON string holding the raw bytes in base64.</summary>
    public JsonElement Data { get; init; }

    /// <summary>The publisher's client id, when it had one.</summary>
    public string? ClientId { get; init; }

    /// <summary>When the server accepted the message.</summary>
    public DateTimeOffset Timestamp { get; init; }

    /// <summary><c>null</c> for JSON data; <c>base64</c> when the payload was not valid UTF-8 JSON (from MQTT, say).</summary>
    public string? Encoding { get; init; }

    /// <summary>Deserializes <see cref="Data"/> (web defaults: camelCase, case-insensitive, unless <paramref name="options"/> say otherwise).</summary>
    /// <typeparam name="T">The type to read the payload as.</typeparam>
    /// <param name="options">Serializer options; <see cref="JsonSerializerOptions.Web"/> when <c>null</c>.</param>
    /// <returns>The payload, or <c>default</c> for a JSON <c>null</c>.</returns>
    public T? GetData<T>(JsonSerializerOptions? options = null) => Data.Deserialize<T>(options ?? JsonSerializerOptions.Web);

    /// <summary>The payload's bytes: base64-decoded when <see cref="Encoding"/> is <c>base64</c>, else the UTF-8 JSON text.</summary>
    /// <returns>A new array.</returns>
    public byte[] GetDataBytes() => Encoding == "base64" && Data.ValueKind == JsonValueKind.String
        ? Data.GetBytesFromBase64()
        : Data.ValueKind == JsonValueKind.Undefined ? [] : JsonSerializer.SerializeToUtf8Bytes(Data);
}

using System.Text.Json.Serialization;

namespace Relay.Ingress.Mqtt;

/// <summary>The source-generated JSON of <see cref="MqttStoredSession"/>.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(MqttStoredSession))]
internal sealed partial class MqttStoredSessionJson : JsonSerializerContext;

using System.Text.Json.Serialization;

namespace Relay.Auth.Http;

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(TokenResponse))]
internal sealed partial class TokensJsonContext : JsonSerializerContext;

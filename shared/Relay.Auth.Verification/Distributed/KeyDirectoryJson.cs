using System.Buffers;
using System.Text.Json;
using Relay.Auth.Verification.Keys;
using Relay.Core.Auth;

namespace Relay.Auth.Verification.Distributed;

/// <summary>
/// An API key as the key directory holds it: JSON with app, id, secret and capabilities. The auth service publishes the
/// apps, keys and its token-signing public key to the directory its bus registered (<see cref="KeyDirectoryPublisher"/>;
/// the Redis bus's lives in Redis), so ingress nodes verify credentials locally (no call per message) with what the auth
/// service holds; nodes with <c>Relay:Auth:KeySource=redis</c> follow it (<see cref="RedisKeyFollower"/>).
/// </summary>
/// <remarks>
/// In Redis: <c>relay:{relay:auth}:keys</c> (hash: <c>APPID.KEYID</c> → this JSON), <c>relay:{relay:auth}:signers</c>
/// (hash: JWKS kid → SubjectPublicKeyInfo, base64), <c>relay:{relay:auth}:version</c> (a counter bumped on every
/// publish); one hash tag, so the publish script's three keys are one Redis Cluster slot. Secrets sit in Redis because
/// HS256 tokens are verified with them: protect Redis (AUTH, TLS, private network) as you protect the auth service's
/// configuration.
/// </remarks>
internal static class KeyDirectoryJson
{
    private static readonly (Operations Operation, string Name)[] OperationNames =
        [(Operations.Subscribe, "subscribe"), (Operations.Publish, "publish"), (Operations.Presence, "presence"), (Operations.History, "history")];

    public static byte[] Encode(ApiKey key)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("app"u8, key.AppId);
            writer.WriteString("id"u8, key.KeyId);
            writer.WriteString("secret"u8, key.Secret);
            writer.WriteStartArray("capabilities"u8);
            foreach (var (glob, operations) in key.Capabilities.Entries)
            {
                writer.WriteStartObject();
                writer.WriteString("channel"u8, glob);
                writer.WriteStartArray("operations"u8);
                foreach (var (operation, name) in OperationNames)
                {
                    if ((operations & operation) != 0)
                    {
                        writer.WriteStringValue(name);
                    }
                }

                writer.WriteEndArray();
                writer.WriteEndObject();
            }

            writer.WriteEndArray();
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    public static ApiKey Decode(ReadOnlySpan<byte> json)
    {
        using var document = JsonDocument.Parse(json.ToArray());
        var root = document.RootElement;
        var options = new RelayKeyOptions { Id = root.GetProperty("id").GetString()!, Secret = root.GetProperty("secret").GetString()! };
        foreach (var capability in root.GetProperty("capabilities").EnumerateArray())
        {
            var entry = new RelayCapabilityOptions { Channel = capability.GetProperty("channel").GetString()! };
            foreach (var operation in capability.GetProperty("operations").EnumerateArray())
            {
                entry.Operations.Add(operation.GetString()!);
            }

            options.Capabilities.Add(entry);
        }

        return new ApiKey(root.GetProperty("app").GetString()!, options.Id, options.Secret, KeyStore.ToCapabilities(options));
    }
}

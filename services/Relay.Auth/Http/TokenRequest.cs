using System.Buffers;
using System.Text.Json;
using Relay.Core.Auth;
using Relay.Core.Protocol;

namespace Relay.Auth.Http;

/// <summary>The body of <c>POST /v1/tokens</c>: <c>{"clientId","capabilities","ttlSeconds"}</c>, each optional (null means the default).</summary>
internal readonly record struct TokenRequest(string? ClientId, Capabilities? Capabilities, long? TtlSeconds)
{
    private const string Shape = "the body must be a JSON object {\"clientId\",\"capabilities\",\"ttlSeconds\"}, each optional";

    private static readonly JsonDocumentOptions JsonOptions = new() { AllowDuplicateProperties = false, MaxDepth = 16 };

    /// <summary>Parses the body; an empty one asks for every default. Unknown fields are ignored.</summary>
    public static bool TryParse(ReadOnlySequence<byte> body, out TokenRequest request, out RelayError? error)
    {
        request = default;
        error = null;
        if (body.IsEmpty)
        {
            return true;
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body, JsonOptions);
        }
        catch (JsonException ex)
        {
            error = RelayError.BadRequest("malformed JSON: " + ex.Message);
            return false;
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                error = RelayError.BadRequest(Shape);
                return false;
            }

            string? clientId = null;
            if (root.TryGetProperty("clientId", out var clientIdValue) && clientIdValue.ValueKind != JsonValueKind.Null)
            {
                if (clientIdValue.ValueKind != JsonValueKind.String)
                {
                    error = RelayError.BadRequest("clientId must be a string");
                    return false;
                }

                clientId = clientIdValue.GetString();
            }

            Capabilities? capabilities = null;
            if (root.TryGetProperty("capabilities", out var capabilitiesValue) && capabilitiesValue.ValueKind != JsonValueKind.Null)
            {
                if (!Capabilities.TryParse(capabilitiesValue, out var parsed, out var capabilitiesError))
                {
                    error = RelayError.BadRequest("capabilities: " + capabilitiesError);
                    return false;
                }

                capabilities = parsed;
            }

            long? ttlSeconds = null;
            if (root.TryGetProperty("ttlSeconds", out var ttlValue) && ttlValue.ValueKind != JsonValueKind.Null)
            {
                if (ttlValue.ValueKind != JsonValueKind.Number || !ttlValue.TryGetInt64(out var ttl))
                {
                    error = RelayError.BadRequest("ttlSeconds must be a whole number of seconds");
                    return false;
                }

                ttlSeconds = ttl;
            }

            request = new TokenRequest(clientId, capabilities, ttlSeconds);
            return true;
        }
    }
}

using System.Buffers.Text;
using System.Text.Json;

namespace Relay.Client;

/// <summary>Reads a JWT's <c>exp</c> without verifying it: only to time the renewal.</summary>
internal static class Tokens
{
    public static DateTimeOffset? ExpiresAt(string? token)
    {
        if (token is null)
        {
            return null;
        }

        var parts = token.Split('.');
        if (parts.Length != 3)
        {
            return null;
        }

        try
        {
            var payload = Base64Url.DecodeFromChars(parts[1]);
            using var document = JsonDocument.Parse(payload);
            return document.RootElement.ValueKind == JsonValueKind.Object
                && document.RootElement.TryGetProperty("exp", out var exp)
                && exp.TryGetInt64(out var seconds)
                ? DateTimeOffset.FromUnixTimeSeconds(seconds)
                : null;
        }
        catch (Exception ex) when (ex is FormatException or JsonException or InvalidOperationException or ArgumentOutOfRangeException)
        {
            return null;
        }
    }
}

using System.Buffers.Text;
using System.Text.Json;

namespace Relay.Ingress.Sse;

/// <summary>
/// The SSE <c>id:</c>: where a stream stands on every channel it follows, as base64url JSON
/// <c>[["channel","epoch",seq],…]</c>. Opaque to clients; sent back in <c>Last-Event-ID</c> to resume.
/// </summary>
internal static class SseCursor
{
    /// <summary>Longest cursor accepted back; bounds the work a forged header can cause.</summary>
    public const int MaxLength = 64 * 1024;

    public static string Encode(Dictionary<string, (string Epoch, long Seq)> positions)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            writer.WriteStartArray();
            foreach (var (channel, (epoch, seq)) in positions)
            {
                writer.WriteStartArray();
                writer.WriteStringValue(channel);
                writer.WriteStringValue(epoch);
                writer.WriteNumberValue(seq);
                writer.WriteEndArray();
            }

            writer.WriteEndArray();
        }

        return Base64Url.EncodeToString(stream.GetBuffer().AsSpan(0, (int)stream.Length));
    }

    public static bool TryDecode(string cursor, out Dictionary<string, (string Epoch, long Seq)> positions)
    {
        positions = new(StringComparer.Ordinal);
        if (cursor.Length > MaxLength)
        {
            return false;
        }

        try
        {
            using var document = JsonDocument.Parse(Base64Url.DecodeFromChars(cursor));
            foreach (var entry in document.RootElement.EnumerateArray())
            {
                if (entry.GetArrayLength() != 3)
                {
                    return false;
                }

                positions[entry[0].GetString()!] = (entry[1].GetString()!, entry[2].GetInt64());
            }

            return true;
        }
        catch (Exception ex) when (ex is FormatException or JsonException or InvalidOperationException or ArgumentException)
        {
            return false;
        }
    }
}

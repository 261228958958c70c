using System.Text.Json;

namespace Relay.Auth.Verification.Tokens;

/// <summary>Reads JWT NumericDate claims (seconds since 1970, possibly fractional) within what <see cref="DateTimeOffset"/> holds.</summary>
internal static class NumericDate
{
    private const long MinSeconds = -62_135_596_800;
    private const long MaxSeconds = 253_402_300_799;

    /// <summary>False with <paramref name="present"/> set when the claim is there but not a number.</summary>
    public static bool TryRead(JsonElement payload, string claim, out long seconds, out bool present)
    {
        seconds = 0;
        present = payload.TryGetProperty(claim, out var value);
        if (!present)
        {
            return false;
        }

        if (value.ValueKind != JsonValueKind.Number)
        {
            return false;
        }

        if (value.TryGetInt64(out var whole))
        {
            seconds = Math.Clamp(whole, MinSeconds, MaxSeconds);
            return true;
        }

        if (!value.TryGetDouble(out var number) || !double.IsFinite(number))
        {
            return false;
        }

        seconds = (long)Math.Clamp(Math.Floor(number), MinSeconds, MaxSeconds);
        return true;
    }
}

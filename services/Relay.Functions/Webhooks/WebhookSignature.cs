using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Relay.Functions.Webhooks;

/// <summary>
/// The <c>Relay-Signature</c> header: <c>t=&lt;unix seconds&gt;,v1=&lt;hex HMAC-SHA256&gt;</c>, the HMAC keyed with the
/// webhook's secret over <c>&lt;t&gt;.&lt;body&gt;</c>. The time inside the signature lets a receiver refuse a replay.
/// </summary>
public static class WebhookSignature
{
    /// <summary>The header's name.</summary>
    public const string Header = "Relay-Signature";

    /// <summary>The header with the event's id (the same on every try: a receiver dedupes by it).</summary>
    public const string IdHeader = "Relay-Webhook-Id";

    /// <summary>The header with the try's number, from 1.</summary>
    public const string AttemptHeader = "Relay-Webhook-Attempt";

    /// <summary>The header's value for <paramref name="body"/> signed at <paramref name="unixSeconds"/>.</summary>
    public static string Sign(string secret, long unixSeconds, ReadOnlySpan<byte> body)
    {
        ArgumentNullException.ThrowIfNull(secret);
        var t = unixSeconds.ToString(CultureInfo.InvariantCulture);
        var signed = new byte[t.Length + 1 + body.Length];
        Encoding.ASCII.GetBytes(t, signed);
        signed[t.Length] = (byte)'.';
        body.CopyTo(signed.AsSpan(t.Length + 1));
        return $"t={t},v1={Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), signed))}";
    }
}

using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Services.Tests.Hostile;

/// <summary>
/// Tokens fuzzed over real HTTP: a valid token (HS256 minted as a customer backend would, and ES256 from the server's
/// own <c>POST /v1/tokens</c>) with one mutation each: a character changed, dropped or added (base64url or not), a
/// segment cut, dropped, repeated or taken from another token, claims re-encoded (another app, a later expiry, more
/// capabilities) under the old signature, <c>alg</c> changed to <c>none</c> or HS256 over the public key's bytes,
/// padding, whitespace, a huge token. Every mutated token is refused with 401 and a Relay code, never a 5xx, never an
/// error logged, unless its signing input is unchanged and its signature decodes to the same bytes (a non-canonical
/// base64url spelling of the same signature), which a verifier may accept.
/// </summary>
[Collection(nameof(HostileCollection))]
public sealed class TokenFuzzTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int Cases = 600;
    private static readonly int[] s_refusalCodes = [40100, 40101, 40102, 40140, 40142];
    private const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    private HostileServer _host = null!;

    public async Task InitializeAsync() => _host = await HostileServer.StartAsync();

    public async Task DisposeAsync() => await _host.DisposeAsync();

    [Fact(Timeout = 180_000)]
    public async Task MutatedTokens_AreRefusedWithARelayCode_NeverAServerError()
    {
        using var http = new HttpClient { BaseAddress = _host.Server.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        var hs256 = TestTokens.ForRootKey("fuzz", TimeSpan.FromMinutes(10));
        var es256 = await IssuedTokenAsync(http);
        Assert.Equal(HttpStatusCode.OK, await StatusAsync(http, hs256));
        Assert.Equal(HttpStatusCode.OK, await StatusAsync(http, es256));

        var random = new Random(20261205);
        var tally = new Dictionary<string, int>(StringComparer.Ordinal);
        var failures = new List<string>();
        for (var i = 0; i < Cases; i++)
        {
            var original = i % 2 == 0 ? hs256 : es256;
            var (token, mutation) = Mutate(original, i % 2 == 0 ? es256 : hs256, random);
            var (status, code) = await AnswerAsync(http, token);
            var same = SameToken(original, token);
            var outcome = status == HttpStatusCode.OK ? "accepted" : $"{(int)status} {code}";
            tally[outcome] = tally.GetValueOrDefault(outcome) + 1;
            if (status == HttpStatusCode.OK ? !same : status != HttpStatusCode.Unauthorized || !s_refusalCodes.Contains(code))
            {
                failures.Add($"case {i} ({mutation}): {outcome} for {Shorten(token)}");
            }
        }

        foreach (var (outcome, n) in tally.OrderBy(static t => t.Key, StringComparer.Ordinal))
        {
            output.WriteLine($"{outcome}: {n}");
        }

        _host.AssertNoErrorLogged();
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(10)));

        // The server still takes the good ones.
        Assert.Equal(HttpStatusCode.OK, await StatusAsync(http, hs256));
        Assert.Equal(HttpStatusCode.OK, await StatusAsync(http, es256));
    }

    private static async Task<string> IssuedTokenAsync(HttpClient http)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/tokens") { Content = new StringContent("""{"clientId":"fuzz"}""", Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return body.RootElement.GetProperty("token").GetString()!;
    }

    private static async Task<HttpStatusCode> StatusAsync(HttpClient http, string token) => (await AnswerAsync(http, token)).Status;

    private static async Task<(HttpStatusCode Status, int Code)> AnswerAsync(HttpClient http, string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "v1/channels");
        if (token.Any(static c => c is < ' ' or > '~') || !request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + token))
        {
            // A value HttpClient will not put in a header (not printable ASCII): sent in the query instead.
            request.RequestUri = new Uri("v1/channels?token=" + Uri.EscapeDataString(token), UriKind.Relative);
        }

        using var response = await http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        if (response.StatusCode == HttpStatusCode.OK)
        {
            return (response.StatusCode, 0);
        }

        try
        {
            using var body = JsonDocument.Parse(text);
            return (response.StatusCode, body.RootElement.GetProperty("error").GetProperty("code").GetInt32());
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return (response.StatusCode, -1);
        }
    }

    private static (string Token, string Mutation) Mutate(string token, string other, Random random)
    {
        var parts = token.Split('.');
        var at = random.Next(token.Length);
        switch (random.Next(14))
        {
            case 0:
                var replacement = Alphabet[random.Next(Alphabet.Length)];
                return (token[..at] + replacement + token[(at + 1)..], $"char {at} → {replacement}");
            case 1:
                return (token.Remove(at, 1), $"char {at} dropped");
            case 2:
                var added = "A-_=+/ .%\"\\\0é"[random.Next(13)];
                return (token.Insert(at, added.ToString()), $"'{added}' added at {at}");
            case 3:
                return (token[..at], $"cut at {at}");
            case 4:
                return (string.Join('.', parts.Take(2)), "signature dropped");
            case 5:
                return (string.Join('.', parts) + "." + parts[2], "a fourth segment");
            case 6:
                var donor = other.Split('.');
                var segment = random.Next(3);
                parts[segment] = donor[segment];
                return (string.Join('.', parts), $"segment {segment} from the other token");
            case 7:
                return (Reclaim(parts, claims => claims["app"] = "other"), "app changed under the old signature");
            case 8:
                return (Reclaim(parts, claims => claims["exp"] = DateTimeOffset.UtcNow.AddYears(1).ToUnixTimeSeconds()), "exp extended under the old signature");
            case 9:
                return (Reheader(parts, "none") + "." + parts[1] + ".", "alg none, no signature");
            case 10:
                return (Reheader(parts, "HS256") + "." + parts[1] + "." + parts[2], "alg switched to HS256");
            case 11:
                return (token + "==", "padding added");
            case 12:
                return (" " + token + "\t", "whitespace around");
            default:
                return (new string('A', 16_000) + "." + parts[1] + "." + parts[2], "a 16 KB header");
        }
    }

    private static string Reclaim(string[] parts, Action<Dictionary<string, object?>> change)
    {
        var claims = JsonSerializer.Deserialize<Dictionary<string, object?>>(Decode(parts[1]))!;
        change(claims);
        return parts[0] + "." + Encode(JsonSerializer.SerializeToUtf8Bytes(claims)) + "." + parts[2];
    }

    private static string Reheader(string[] parts, string alg)
    {
        var header = JsonSerializer.Deserialize<Dictionary<string, object?>>(Decode(parts[0]))!;
        header["alg"] = alg;
        return Encode(JsonSerializer.SerializeToUtf8Bytes(header));
    }

    // Whether a verifier may take the mutated token as the original: the same signing input, the same signature bytes.
    private static bool SameToken(string original, string mutated)
    {
        var a = original.Split('.');
        var b = mutated.Split('.');
        if (b.Length != 3 || a[0] != b[0] || a[1] != b[1])
        {
            return false;
        }

        try
        {
            return Decode(a[2]).AsSpan().SequenceEqual(Decode(b[2]));
        }
        catch (FormatException)
        {
            return false;
        }
    }

    private static byte[] Decode(string segment)
    {
        var text = segment.Replace('-', '+').Replace('_', '/');
        return Convert.FromBase64String(text.PadRight(text.Length + ((4 - (text.Length % 4)) % 4), '='));
    }

    private static string Encode(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private static string Shorten(string token) => token.Length > 80 ? token[..40] + "…" + token[^30..] : token;
}

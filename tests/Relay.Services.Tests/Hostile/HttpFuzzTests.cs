using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Services.Tests.Hostile;

/// <summary>
/// The HTTP APIs fuzzed over real sockets: the channels API (publish, history, presence, list), SSE, token requests and
/// Pusher's HTTP API, with seeded random methods, channel names (empty, 300 bytes, wildcards, control characters,
/// percent-encoded junk, non-ASCII), query values (negative, huge, not numbers, repeated), bodies (valid publishes and
/// batches up to 150, random nested JSON, invalid JSON, invalid UTF-8, bodies past the limit, wrong content types) and
/// credentials (the root key, a subscribe-only key, another app's, none, garbage). Every answer is below 500, every
/// refusal of Relay's own API is JSON with a Relay code (but the framework's 405 with its Allow header, and the HTTP
/// server's 400 for a NUL byte in the path), nothing is logged as an error, and the server still publishes and reads
/// history afterwards. Found by it: a path under /v1 that no endpoint serves was a bodyless 404; now 40400 in JSON.
/// </summary>
[Collection(nameof(HostileCollection))]
public sealed class HttpFuzzTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int Cases = 1_500;

    // Relay:Ingress:MaxHttpBodyBytes by default.
    private const long MaxBodyBytes = 1024 * 1024;

    private HostileServer _host = null!;

    public async Task InitializeAsync() => _host = await HostileServer.StartAsync();

    public async Task DisposeAsync() => await _host.DisposeAsync();

    [Fact(Timeout = 300_000)]
    public async Task RandomRequests_GetA4xxOr2xx_WithARelayCode_NeverAServerError()
    {
        using var http = new HttpClient { BaseAddress = _host.Server.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        var random = new Random(20261205);
        var tally = new Dictionary<string, int>(StringComparer.Ordinal);
        var failures = new List<string>();
        for (var i = 0; i < Cases; i++)
        {
            using var request = Generate(random, out var what);
            HttpResponseMessage response;
            try
            {
                response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            }
            catch (HttpRequestException e) when (e.InnerException is IOException && request.Content?.Headers.ContentLength > MaxBodyBytes)
            {
                // Refused (413) and closed before the client had written a body past the limit: the answer is lost to it.
                tally["closed while sending a body past the limit"] = tally.GetValueOrDefault("closed while sending a body past the limit") + 1;
                continue;
            }

            using var answered = response;
            var status = (int)response.StatusCode;
            tally[$"{status}"] = tally.GetValueOrDefault($"{status}") + 1;
            if (status >= 500)
            {
                failures.Add($"case {i} ({what}): {status} {await ReadSomeAsync(response)}");
                continue;
            }

            // A stream that was accepted (SSE) is left at its headers.
            // A method a path does not take is the framework's 405 with an Allow header; a NUL byte in the path is refused
            // by the HTTP server before any endpoint (docs/protocol.md).
            if ((status == 405 && response.Content.Headers.Allow.Count > 0) || (status == 400 && request.RequestUri!.OriginalString.Contains("%00", StringComparison.Ordinal)))
            {
                continue;
            }

            if (status >= 400 && what.StartsWith("relay", StringComparison.Ordinal) && !await HasRelayCodeAsync(response))
            {
                failures.Add($"case {i} ({what}): {status} without a Relay error body: {request.Method} {request.RequestUri} {await ReadSomeAsync(response)}");
            }
        }

        foreach (var (status, n) in tally.OrderBy(static t => t.Key, StringComparer.Ordinal))
        {
            output.WriteLine($"{status}: {n}");
        }

        _host.AssertNoErrorLogged();
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(10)));
        Assert.True(tally.Keys.Count(static k => k.StartsWith('2')) > 0 && tally.Keys.Count(static k => k.StartsWith('4')) >= 4, "the fuzz reached too few kinds of answer");

        // Still serving: a publish and its history.
        using var publish = new HttpRequestMessage(HttpMethod.Post, "v1/channels/after-fuzz/messages") { Content = new StringContent("""{"data":{"ok":true}}""", Encoding.UTF8, "application/json") };
        publish.Headers.Authorization = Basic(RelayServer.Key);
        using var published = await http.SendAsync(publish);
        Assert.True(published.IsSuccessStatusCode, $"publish after the fuzz: {(int)published.StatusCode}");
        using var history = new HttpRequestMessage(HttpMethod.Get, "v1/channels/after-fuzz/messages");
        history.Headers.Authorization = Basic(RelayServer.Key);
        using var read = await http.SendAsync(history);
        Assert.Contains("\"ok\":true", await read.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    private static HttpRequestMessage Generate(Random random, out string what)
    {
        var channel = Channel(random);
        var kind = random.Next(10);
        HttpRequestMessage request;
        switch (kind)
        {
            case 0 or 1 or 2:
                request = new HttpRequestMessage(Method(random, HttpMethod.Post), $"v1/channels/{channel}/messages") { Content = Body(random) };
                what = "relay publish";
                break;
            case 3:
                request = new HttpRequestMessage(Method(random, HttpMethod.Get), $"v1/channels/{channel}/messages?{Query(random, "limit", "before", "since", "rewind")}");
                what = "relay history";
                break;
            case 4:
                request = new HttpRequestMessage(Method(random, HttpMethod.Get), $"v1/channels/{channel}/presence?{Query(random, "limit")}");
                what = "relay presence";
                break;
            case 5:
                request = new HttpRequestMessage(Method(random, HttpMethod.Get), $"v1/channels?{Query(random, "prefix", "limit", "by")}");
                what = "relay channels";
                break;
            case 6:
                request = new HttpRequestMessage(Method(random, HttpMethod.Post), "v1/tokens") { Content = Body(random) };
                what = "relay tokens";
                break;
            case 7:
                request = new HttpRequestMessage(HttpMethod.Get, $"v1/sse?channel={channel}&{Query(random, "channel", "since", "rewind", "key")}");
                what = "relay sse";
                break;
            default:
                var path = random.Next(4) switch
                {
                    0 => "events",
                    1 => "batch_events",
                    2 => $"channels/{channel}",
                    _ => $"users/{channel}/terminate_connections",
                };
                request = new HttpRequestMessage(Method(random, path.Contains("events", StringComparison.Ordinal) || path.StartsWith("users", StringComparison.Ordinal) ? HttpMethod.Post : HttpMethod.Get), $"apps/{(random.Next(3) == 0 ? "other" : RelayServer.AppId)}/{path}?{Query(random, "auth_key", "auth_timestamp", "auth_version", "body_md5", "auth_signature", "info")}")
                {
                    Content = random.Next(2) == 0 ? Body(random) : null,
                };
                what = "pusher api";
                break;
        }

        switch (random.Next(6))
        {
            case 0 or 1:
                request.Headers.Authorization = Basic(RelayServer.Key);
                break;
            case 2:
                request.Headers.Authorization = Basic(RelayServer.SubscribeOnlyKey);
                break;
            case 3:
                request.Headers.Authorization = Basic(RelayServer.OtherAppKey);
                break;
            case 4:
                request.Headers.TryAddWithoutValidation("Authorization", random.Next(2) == 0 ? "Bearer not.a.token" : "Basic !!!");
                break;
        }

        return request;
    }

    private static HttpMethod Method(Random random, HttpMethod usual) => random.Next(8) switch
    {
        0 => HttpMethod.Put,
        1 => HttpMethod.Delete,
        2 => random.Next(2) == 0 ? HttpMethod.Get : HttpMethod.Post,
        _ => usual,
    };

    private static string Channel(Random random) => random.Next(9) switch
    {
        0 => "",
        1 => new string('c', 300),
        2 => Uri.EscapeDataString("a#b+c*"),
        3 => "%00%01%1F",
        4 => "%ZZ%",
        5 => Uri.EscapeDataString("caf\u00e9:\u4e2d\u6587"),
        6 => "..%2F..%2Fetc",
        7 => Uri.EscapeDataString("room:" + random.Next(5)),
        _ => "fuzz-" + random.Next(5),
    };

    private static string Query(Random random, params string[] names)
    {
        var parts = new List<string>();
        for (var n = random.Next(0, 4); n > 0; n--)
        {
            var value = random.Next(8) switch
            {
                0 => "-1",
                1 => "99999999999999999999",
                2 => "abc",
                3 => "1.5",
                4 => "",
                5 => "%7B%22epoch%22%3A1%7D",
                6 => new string('9', 2_000),
                _ => random.Next(0, 200).ToString(System.Globalization.CultureInfo.InvariantCulture),
            };
            parts.Add($"{names[random.Next(names.Length)]}={value}");
        }

        return string.Join('&', parts);
    }

    private static HttpContent? Body(Random random)
    {
        var (bytes, type) = random.Next(10) switch
        {
            0 => (Encoding.UTF8.GetBytes($$"""{"data":{"n":{{random.Next()}}},"name":"e","id":"id-{{random.Next(20)}}"}"""), "application/json"),
            1 => (Encoding.UTF8.GetBytes("[" + string.Join(',', Enumerable.Range(0, random.Next(0, 150)).Select(i => $$"""{"data":{{i}}}""")) + "]"), "application/json"),
            2 => (Encoding.UTF8.GetBytes(RandomJson(random, 0)), "application/json"),
            3 => (Encoding.UTF8.GetBytes("{\"data\":" + new string('[', 300) + new string(']', 300) + "}"), "application/json"),
            4 => (Encoding.UTF8.GetBytes("{\"data\":"), "application/json"),
            5 => ([.. "{\"data\":\""u8, 0xC3, 0x28, .. "\"}"u8], "application/json"),
            6 => (Encoding.UTF8.GetBytes("{\"data\":\"" + new string('x', 1_100_000) + "\"}"), "application/json"),
            7 => (Encoding.UTF8.GetBytes("data=1&name=2"), "application/x-www-form-urlencoded"),
            8 => ([], "application/json"),
            _ => (Encoding.UTF8.GetBytes("""{"name":"ev","channels":["a","b"],"data":"{}"}"""), "text/plain"),
        };
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse(type);
        return content;
    }

    private static string RandomJson(Random random, int depth) => (depth > 4 ? random.Next(4) : random.Next(7)) switch
    {
        0 => "null",
        1 => random.Next(2) == 0 ? "true" : "-1e309",
        2 => $"\"{(random.Next(2) == 0 ? "data" : "\\ud800")}\"",
        3 => random.Next().ToString(System.Globalization.CultureInfo.InvariantCulture),
        4 => "[" + string.Join(',', Enumerable.Range(0, random.Next(4)).Select(_ => RandomJson(random, depth + 1))) + "]",
        _ => "{" + string.Join(',', Enumerable.Range(0, random.Next(4)).Select(_ => $"\"{new[] { "data", "name", "id", "clientId", "ttl", "x" }[random.Next(6)]}\":{RandomJson(random, depth + 1)}")) + "}",
    };

    private static AuthenticationHeaderValue Basic(string key) => new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(key)));

    private static async Task<bool> HasRelayCodeAsync(HttpResponseMessage response)
    {
        try
        {
            using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            return body.RootElement.GetProperty("error").GetProperty("code").GetInt32() >= 40000;
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return false;
        }
    }

    private static async Task<string> ReadSomeAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        return text.Length > 200 ? text[..200] : text;
    }
}

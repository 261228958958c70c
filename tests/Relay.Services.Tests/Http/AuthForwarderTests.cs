using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Relay.Testing;

namespace Relay.Services.Tests.Http;

/// <summary>
/// A node that follows the auth service passes token requests there: an auth service that takes the connection and
/// never answers gives the client 503 (50300) after <c>Relay:Ingress:AuthTimeout</c>, not a hung request.
/// </summary>
public sealed class AuthForwarderTests(RedisBusFixture redis) : IClassFixture<RedisBusFixture>
{
    [Fact]
    public async Task AuthServiceThatNeverAnswers_TokenRequestsGet503_AfterAuthTimeout()
    {
        // Accepts connections (the kernel does, into the backlog) and never reads or answers them.
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        var settings = ServerFixture.Settings();
        redis.AddTo(settings);
        settings["Relay:Auth:KeySource"] = "redis";
        settings["Relay:Ingress:AuthUrl"] = $"http://127.0.0.1:{((IPEndPoint)silent.LocalEndpoint).Port}";
        settings["Relay:Ingress:AuthTimeout"] = "00:00:01";
        await using var node = await RelayServer.StartAsync(settings);
        using var http = new HttpClient { BaseAddress = node.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));

        // Several at once, as clients arrive: each is answered on its own within the timeout.
        var clock = Stopwatch.StartNew();
        var answers = await Task.WhenAll(Enumerable.Range(0, 8).Select(async _ =>
        {
            using var body = new StringContent("{}", Encoding.UTF8, "application/json");
            using var response = await http.PostAsync(new Uri("v1/tokens", UriKind.Relative), body);
            return (response.StatusCode, Body: await response.Content.ReadAsStringAsync(), RetryAfter: response.Headers.RetryAfter);
        }));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(8), $"the 503s took {clock.Elapsed}");
        foreach (var (status, body, retryAfter) in answers)
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
            var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
            Assert.Equal((50300, 503), (error.GetProperty("code").GetInt32(), error.GetProperty("statusCode").GetInt32()));
            Assert.Contains("did not answer within 1 s", error.GetProperty("message").GetString(), StringComparison.Ordinal);
            Assert.NotNull(retryAfter);
        }
    }
}

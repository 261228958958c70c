using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Relay.Testing;

namespace Relay.Services.Tests.Tls;

/// <summary>
/// Mutual TLS between services (<c>Relay:InternalTls</c>): the auth service serves tokens and its JWKS on its internal
/// listener only, to callers whose certificate the internal CA issued. An ingress node with its certificate gets both
/// through, and the token it hands out works on it (the keys and the messages cross Redis, itself under mutual TLS); a
/// caller with no certificate, one from another CA or an expired one is refused in the handshake; the public listener
/// answers those paths 403 and asks no one for a certificate.
/// </summary>
public sealed class InternalTlsTests(MutualTlsRedisFixture tls) : IClassFixture<MutualTlsRedisFixture>
{
    private static readonly TimeSpan Within = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task IngressWithItsCertificate_GetsTokensAndJwks_FromTheAuthServicesInternalListener()
    {
        await using var services = await AuthAndIngressAsync();
        using var http = new HttpClient { BaseAddress = services.Ingress.BaseAddress, Timeout = Within };
        using var jwks = await http.GetAsync(new Uri(".well-known/jwks.json", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, jwks.StatusCode);
        Assert.True(JsonDocument.Parse(await jwks.Content.ReadAsStringAsync()).RootElement.GetProperty("keys").GetArrayLength() > 0);

        var token = await TestTokens.RequestAsync(http);
        await using var client = await TestSocket.ConnectAsync(new Uri($"{services.Ingress.RealtimeUri}?token={Uri.EscapeDataString(token)}"));
        Assert.Equal("ok", (await client.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "internal" })).GetProperty("type").GetString());
        Assert.Equal("ok", (await client.RequestAsync(new() { ["type"] = "publish", ["channel"] = "internal", ["data"] = 1 })).GetProperty("type").GetString());
        Assert.Equal(1, (await client.ReceiveMessageAsync()).GetProperty("data").GetInt32());
    }

    [Fact]
    public async Task CallerWithoutACertificate_IsRefusedInTheHandshake()
    {
        await using var services = await AuthAndIngressAsync();
        await AssertRefusedAsync(services.InternalUri, clientCertificate: null);
    }

    [Fact]
    public async Task CallerWithACertificateFromAnotherCa_IsRefusedInTheHandshake()
    {
        await using var services = await AuthAndIngressAsync();
        using var otherCa = TestCertificate.CreateAuthority("another-ca");
        using var stranger = otherCa.Issue("ingress");
        await AssertRefusedAsync(services.InternalUri, stranger.Certificate);
    }

    [Fact]
    public async Task CallerWithAnExpiredCertificateFromTheCa_IsRefusedInTheHandshake()
    {
        await using var services = await AuthAndIngressAsync();
        var now = DateTimeOffset.UtcNow;
        using var expired = tls.Authority.Issue("ingress", now.AddHours(-12), now.AddHours(-1));
        await AssertRefusedAsync(services.InternalUri, expired.Certificate);
    }

    [Fact]
    public async Task CallerWithItsCertificate_IsServedOnTheInternalListener()
    {
        await using var services = await AuthAndIngressAsync();
        using var certificate = tls.Authority.Issue("ingress");
        using var http = new HttpClient(Handler(certificate.Certificate)) { BaseAddress = services.InternalUri, Timeout = Within };
        using var response = await http.GetAsync(new Uri(".well-known/jwks.json", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task AuthServicesPublicListener_Answers403ForTokensAndJwks_AndStillServesHealth()
    {
        var (auth, _) = await StartAuthAsync();
        await using var running = auth;
        using var http = new HttpClient { BaseAddress = auth.BaseAddress, Timeout = Within };
        using var jwks = await http.GetAsync(new Uri(".well-known/jwks.json", UriKind.Relative));
        Assert.Equal(HttpStatusCode.Forbidden, jwks.StatusCode);
        var error = JsonDocument.Parse(await jwks.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal(40300, error.GetProperty("code").GetInt32());
        Assert.Contains("Relay:InternalTls:Port", error.GetProperty("message").GetString(), StringComparison.Ordinal);

        using var tokenRequest = new HttpRequestMessage(HttpMethod.Post, new Uri("v1/tokens", UriKind.Relative)) { Content = new StringContent("{}", Encoding.UTF8, "application/json") };
        tokenRequest.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        using var token = await http.SendAsync(tokenRequest);
        Assert.Equal(HttpStatusCode.Forbidden, token.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(new Uri("healthz", UriKind.Relative))).StatusCode);
    }

    [Fact]
    public async Task PublicTlsListener_AsksNoClientForACertificate_WhileTheInternalOneDoes()
    {
        using var publicCertificate = TestCertificate.Create("relay-public");
        var (certificatePath, keyPath) = publicCertificate.WriteFiles(tls.Directory, "public");
        var port = RedisServer.FreePort();
        var settings = tls.Service("auth-public-tls");
        settings["Relay:Tls:CertificatePath"] = certificatePath;
        settings["Relay:Tls:KeyPath"] = keyPath;
        settings["Relay:Mqtt:TlsPort"] = "0";
        settings["Relay:InternalTls:Port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await using var auth = await RelayServer.StartAsync(settings);

        Assert.Equal(Uri.UriSchemeHttps, auth.BaseAddress.Scheme);
        Assert.Equal((false, publicCertificate.Thumbprint), await HandshakeAsync(auth.BaseAddress.Port));
        var (asked, served) = await HandshakeAsync(port);
        Assert.True(asked, "the internal listener did not ask for a client certificate");
        Assert.NotEqual(publicCertificate.Thumbprint, served);
    }

    [Fact]
    public async Task IngressWithACertificateFromAnotherCa_GetsNoTokens()
    {
        var (auth, port) = await StartAuthAsync();
        await using var running = auth;

        // Its Redis certificate is good, its internal one from another CA (and trusting only that CA).
        using var otherCa = TestCertificate.CreateAuthority("another-ca");
        using var stranger = otherCa.Issue("ingress");
        var (certificatePath, keyPath) = stranger.WriteFiles(tls.Directory, "stranger-ingress");
        var otherCaPath = Path.Combine(tls.Directory, "another-ca.pem");
        await File.WriteAllTextAsync(otherCaPath, otherCa.CertificatePem);
        var nodeSettings = IngressSettings(port);
        nodeSettings["Relay:InternalTls:CertificatePath"] = certificatePath;
        nodeSettings["Relay:InternalTls:KeyPath"] = keyPath;
        nodeSettings["Relay:InternalTls:CaPath"] = otherCaPath;
        await using var node = await RelayServer.StartAsync(nodeSettings);

        using var http = new HttpClient { BaseAddress = node.BaseAddress, Timeout = Within };
        using var response = await http.GetAsync(new Uri(".well-known/jwks.json", UriKind.Relative));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal(50300, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetInt32());
    }

    [Fact]
    public async Task IngressWithACertificate_AndAPlainHttpAuthUrl_StopsAtStart_SayingToUseHttps()
    {
        var settings = IngressSettings(RedisServer.FreePort());
        settings["Relay:Ingress:AuthUrl"] = "http://127.0.0.1:1/";
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(settings).WaitAsync(Within));
        Assert.Contains("over https://", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task OwnCertificateNotFromTheCa_StopsAtStart_NamingTheSetting()
    {
        using var otherCa = TestCertificate.CreateAuthority("another-ca");
        var settings = tls.Service("auth-wrong");
        var wrong = tls.Service("auth-wrong-issuer", otherCa);
        settings["Relay:InternalTls:CertificatePath"] = wrong["Relay:InternalTls:CertificatePath"];
        settings["Relay:InternalTls:KeyPath"] = wrong["Relay:InternalTls:KeyPath"];
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(settings).WaitAsync(Within));
        Assert.Contains("Relay:InternalTls:CertificatePath", failure.Message, StringComparison.Ordinal);
        Assert.Contains("was not issued by the CA in Relay:InternalTls:CaPath", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExpiredOwnCertificate_StopsAtStart_NamingTheSetting()
    {
        var now = DateTimeOffset.UtcNow;
        var forRedis = tls.Service("auth-redis");
        var settings = tls.Service("auth-expired", notBefore: now.AddHours(-12), notAfter: now.AddHours(-1));
        settings["Relay:Redis:ClientCertificatePath"] = forRedis["Relay:Redis:ClientCertificatePath"];
        settings["Relay:Redis:ClientKeyPath"] = forRedis["Relay:Redis:ClientKeyPath"];
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(settings).WaitAsync(Within));
        Assert.Contains("Relay:InternalTls:CertificatePath", failure.Message, StringComparison.Ordinal);
        Assert.Contains("expired at", failure.Message, StringComparison.Ordinal);
    }

    private Dictionary<string, string?> IngressSettings(int authPort)
    {
        var settings = tls.Service("ingress");
        settings["Relay:Auth:KeySource"] = "redis";
        settings["Relay:Ingress:AuthUrl"] = $"https://localhost:{authPort}/";
        return settings;
    }

    // The auth service, and an ingress node that follows its keys and passes token requests to its internal listener;
    // both on the mutual-TLS Redis.
    private async Task<Services> AuthAndIngressAsync()
    {
        var (auth, port) = await StartAuthAsync();
        try
        {
            var ingress = await RelayServer.StartAsync(IngressSettings(port));
            return new Services(auth, ingress, new Uri($"https://localhost:{port}/"));
        }
        catch
        {
            await auth.DisposeAsync();
            throw;
        }
    }

    // The auth service: a Relay that issues tokens and publishes keys, with its internal listener on a free port.
    private async Task<(RelayServer Auth, int Port)> StartAuthAsync()
    {
        var port = RedisServer.FreePort();
        var settings = tls.Service("auth");
        settings["Relay:InternalTls:Port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return (await RelayServer.StartAsync(settings), port);
    }

    // A caller that trusts the auth service's certificate (the test's CA) and presents clientCertificate, or nothing.
    private HttpMessageHandler Handler(X509Certificate2? clientCertificate)
    {
        var authority = tls.Authority.Certificate;
        var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, _) =>
            certificate is not null && X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()).Issuer == authority.Subject;
        if (clientCertificate is not null)
        {
            handler.SslOptions.LocalCertificateSelectionCallback = (_, _, _, _, _) => clientCertificate;
        }

        return handler;
    }

    // A TLS handshake that presents nothing: whether the server asked for a client certificate, and the thumbprint of
    // the one it served (the handshake itself may then fail, or succeed and be closed: either way it was asked).
    private static async Task<(bool Asked, string? Served)> HandshakeAsync(int port)
    {
        var asked = false;
        string? served = null;
        using var client = new System.Net.Sockets.TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port);
        await using var ssl = new SslStream(client.GetStream(), leaveInnerStreamOpen: false);
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            RemoteCertificateValidationCallback = (_, certificate, _, _) =>
            {
                served = certificate?.GetCertHashString();
                return true;
            },
            LocalCertificateSelectionCallback = (_, _, _, remote, issuers) =>
            {
                // Called with the server's certificate once the server asked (with the issuers it accepts).
                asked |= remote is not null;
                return null!;
            },
        };
        try
        {
            using var timeout = new CancellationTokenSource(Within);
            await ssl.AuthenticateAsClientAsync(options, timeout.Token);
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            // Refused for want of a certificate.
        }

        return (asked, served);
    }

    private async Task AssertRefusedAsync(Uri internalUri, X509Certificate2? clientCertificate)
    {
        using var http = new HttpClient(Handler(clientCertificate)) { BaseAddress = internalUri, Timeout = Within };
        var refusal = await Assert.ThrowsAsync<HttpRequestException>(() => http.GetAsync(new Uri(".well-known/jwks.json", UriKind.Relative)));

        // The server ends the handshake (an alert, or closing the connection once TLS 1.3 has sent the client's certificate).
        Assert.True(refusal.InnerException is AuthenticationException or IOException || refusal.HttpRequestError is HttpRequestError.SecureConnectionError or HttpRequestError.ResponseEnded,
            refusal.ToString());
    }

    private sealed record Services(RelayServer Auth, RelayServer Ingress, Uri InternalUri) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await Ingress.DisposeAsync();
            await Auth.DisposeAsync();
        }
    }
}

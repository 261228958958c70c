using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Net.WebSockets;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Ingress.Realtime;
using Relay.Testing;

namespace Relay.Services.Tests.Tls;

/// <summary>A node that terminates TLS itself (<c>Relay:Tls</c>): wss://, https:// and SSE over it, renewal without a restart, and what a client on the wrong side of TLS gets.</summary>
public sealed class TlsTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("relay-tls-").FullName;
    private readonly TestCertificate _first = TestCertificate.Create("relay-first");

    private string CertificatePath => Path.Combine(_folder, "tls.crt");

    private string KeyPath => Path.Combine(_folder, "tls.key");

    public void Dispose()
    {
        _first.Dispose();
        Directory.Delete(_folder, recursive: true);
    }

    private Dictionary<string, string?> TlsSettings(string reloadInterval = "00:00:10")
    {
        _first.WriteTo(CertificatePath, KeyPath);
        return new()
        {
            ["Relay:Tls:CertificatePath"] = CertificatePath,
            ["Relay:Tls:KeyPath"] = KeyPath,
            ["Relay:Tls:ReloadInterval"] = reloadInterval,
        };
    }

    private static Task<TestSocket> ConnectAsync(Uri uri, RemoteCertificateValidationCallback check) =>
        TestSocket.ConnectAsync(uri, "relay.v1.json", o => o.RemoteCertificateValidationCallback = check);

    [Fact]
    public async Task Wss_ToANodeServingTls_ConnectsSubscribesPublishesAndReceives()
    {
        await using var server = await RelayServer.StartAsync(TlsSettings());
        Assert.Equal("wss", server.RealtimeUri.Scheme);
        var seen = new List<string>();
        var check = TestCertificate.Accepting(seen, _first);

        await using var subscriber = await ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key), check);
        Assert.Equal("connected", subscriber.Connected.GetProperty("type").GetString());
        await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "tls:ws" });
        await using var publisher = await ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key), check);
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "tls:ws", ["data"] = 42 });

        Assert.Equal(42, (await subscriber.ReceiveMessageAsync()).GetProperty("data").GetInt32());
        Assert.Equal([_first.Thumbprint, _first.Thumbprint], seen);
    }

    [Fact]
    public async Task HttpsAndSse_ToANodeServingTls_PublishAndStream()
    {
        await using var server = await RelayServer.StartAsync(TlsSettings());
        Assert.Equal(Uri.UriSchemeHttps, server.BaseAddress.Scheme);
        var seen = new List<string>();
        var accept = TestCertificate.Accepting(seen, _first);
        var sseHandler = new HttpClientHandler { ServerCertificateCustomValidationCallback = (m, c, ch, e) => accept(m, c, ch, e) };
        await using var stream = await SseTestClient.OpenAsync(new Uri(server.BaseAddress, $"v1/sse?key={Uri.EscapeDataString(RelayServer.Key)}&channel=tls:sse"), handler: sseHandler);
        Assert.Equal(HttpStatusCode.OK, stream.Status);

        using var http = new HttpClient(new HttpClientHandler { ServerCertificateCustomValidationCallback = (m, c, ch, e) => accept(m, c, ch, e) })
        {
            BaseAddress = server.BaseAddress,
            Timeout = TestSocket.DefaultTimeout,
        };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        using var published = await http.PostAsync("v1/channels/tls:sse/messages", new StringContent("""{"data":"over https"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Created, published.StatusCode);

        var message = await stream.ReadEventAsync();
        Assert.Equal("over https", message.Json.GetProperty("data").GetString());
        Assert.Equal([_first.Thumbprint, _first.Thumbprint], seen);
    }

    [Fact]
    public async Task Certificate_FilesReplaced_NewConnectionsGetTheNewOne_AndOpenOnesStay()
    {
        var log = new LogCapture();
        await using var server = await RelayServer.StartAsync(TlsSettings(reloadInterval: "00:00:00.200"), s => s.AddSingleton<ILoggerProvider>(log));
        using var second = TestCertificate.Create("relay-second");
        var seen = new List<string>();
        var check = TestCertificate.Accepting(seen, _first, second);
        await using var open = await ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key), check);
        await open.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "tls:renew" });

        // A key that is not the certificate's (the second's certificate beside the first's key: a renewal half done)
        // is refused and logged; the first certificate is still served.
        TestCertificate.Replace(CertificatePath, second.CertificatePem);
        await WaitForAsync(() => log.Entries.Any(static e => e.EventId.Id == 922), "the failed reload to be logged");
        Assert.Equal(_first.Thumbprint, await HandshakeThumbprintAsync(server, check, seen));

        TestCertificate.Replace(KeyPath, second.KeyPem);
        var thumbprint = string.Empty;
        for (var i = 0; i < 50 && thumbprint != second.Thumbprint; i++)
        {
            await Task.Delay(200);
            thumbprint = await HandshakeThumbprintAsync(server, check, seen);
        }

        Assert.Equal(second.Thumbprint, thumbprint);
        Assert.Contains(log.Entries, e => e.EventId.Id == 921 && e.Message.Contains(second.Thumbprint, StringComparison.Ordinal));

        // The connection made with the first certificate was never cut: it still gets what is published.
        await using var publisher = await ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key), check);
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "tls:renew", ["data"] = 1 });
        Assert.Equal(1, (await open.ReceiveMessageAsync()).GetProperty("data").GetInt32());
    }

    [Fact]
    public async Task PlainWebSocket_ToATlsPort_FailsCleanly_AndTheNodeServesWssAfter()
    {
        await using var server = await RelayServer.StartAsync(TlsSettings());
        var plain = new Uri($"ws://{server.BaseAddress.Authority}/v1/realtime?key={Uri.EscapeDataString(RelayServer.Key)}");
        for (var i = 0; i < 20; i++)
        {
            using var socket = new ClientWebSocket();
            await Assert.ThrowsAsync<WebSocketException>(() => socket.ConnectAsync(plain, CancellationToken.None).WaitAsync(TestSocket.DefaultTimeout));
        }

        // Relay's own transport never took one: a plain upgrade on a TLS port is not a realtime connection.
        Assert.Equal(0, server.Services.GetRequiredService<RealtimeListenerFactory>().Taken);
        var seen = new List<string>();
        await using var client = await ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key), TestCertificate.Accepting(seen, _first));
        await client.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "tls:after" });
    }

    [Fact]
    public async Task TlsPorts_BesideAPlainListener_EachSideServesOnlyItsOwn()
    {
        var (plainPort, tlsPort) = (FreePort(), FreePort());
        var settings = TlsSettings();
        settings["urls"] = $"http://127.0.0.1:{plainPort};https://127.0.0.1:{tlsPort}";
        settings["Relay:Tls:Ports:0"] = tlsPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await using var server = await RelayServer.StartAsync(settings);
        var query = $"/v1/realtime?key={Uri.EscapeDataString(RelayServer.Key)}";
        var seen = new List<string>();
        var check = TestCertificate.Accepting(seen, _first);

        // The wrong side of TLS on each port fails, and fails only that client.
        using (var tlsToPlain = new ClientWebSocket())
        {
            tlsToPlain.Options.RemoteCertificateValidationCallback = check;
            await Assert.ThrowsAsync<WebSocketException>(() => tlsToPlain.ConnectAsync(new Uri($"wss://127.0.0.1:{plainPort}{query}"), CancellationToken.None).WaitAsync(TestSocket.DefaultTimeout));
        }

        using (var plainToTls = new ClientWebSocket())
        {
            await Assert.ThrowsAsync<WebSocketException>(() => plainToTls.ConnectAsync(new Uri($"ws://127.0.0.1:{tlsPort}{query}"), CancellationToken.None).WaitAsync(TestSocket.DefaultTimeout));
        }

        await using var plain = await TestSocket.ConnectAsync(new Uri($"ws://127.0.0.1:{plainPort}{query}"));
        await plain.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "tls:mixed" });
        await using var secure = await ConnectAsync(new Uri($"wss://127.0.0.1:{tlsPort}{query}"), check);
        await secure.RequestAsync(new() { ["type"] = "publish", ["channel"] = "tls:mixed", ["data"] = 5 });
        Assert.Equal(5, (await plain.ReceiveMessageAsync()).GetProperty("data").GetInt32());

        // The plain port is still Relay's own transport; the TLS port never was.
        Assert.Equal(1, server.Services.GetRequiredService<RealtimeListenerFactory>().Taken);

        // Bound once, though both the defaults and the ingress add TLS.
        Assert.Equal([tlsPort], server.Services.GetRequiredService<IOptions<Relay.ServiceDefaults.Tls.TlsOptions>>().Value.Ports);
    }

    [Fact]
    public async Task KestrelsOwnHttps_WithTheOwnTransportOn_RefusesPlainUpgradesOnThatPort()
    {
        // TLS set up by Kestrel's standard configuration (an https:// URL and its default certificate), not Relay:Tls.
        _first.WriteTo(CertificatePath, KeyPath);
        var settings = new Dictionary<string, string?>
        {
            ["urls"] = "https://127.0.0.1:0",
            ["Kestrel:Certificates:Default:Path"] = CertificatePath,
            ["Kestrel:Certificates:Default:KeyPath"] = KeyPath,
        };
        await using var server = await RelayServer.StartAsync(settings);
        using (var plainToTls = new ClientWebSocket())
        {
            await Assert.ThrowsAsync<WebSocketException>(() => plainToTls.ConnectAsync(new Uri($"ws://{server.BaseAddress.Authority}/v1/realtime?key={Uri.EscapeDataString(RelayServer.Key)}"), CancellationToken.None).WaitAsync(TestSocket.DefaultTimeout));
        }

        var seen = new List<string>();
        await using var secure = await ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key), TestCertificate.Accepting(seen, _first));
        Assert.Equal([_first.Thumbprint], seen);
    }

    [Fact]
    public async Task Pkcs12File_WithItsPassword_IsServed()
    {
        var path = Path.Combine(_folder, "tls.pfx");
        await File.WriteAllBytesAsync(path, _first.Certificate.Export(X509ContentType.Pkcs12, "pfx-password"));
        var settings = new Dictionary<string, string?> { ["Relay:Tls:CertificatePath"] = path, ["Relay:Tls:Password"] = "pfx-password" };
        await using var server = await RelayServer.StartAsync(settings);
        var seen = new List<string>();
        await using var client = await ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key), TestCertificate.Accepting(seen, _first));
        Assert.Equal([_first.Thumbprint], seen);

        settings["Relay:Tls:Password"] = "not-the-password";
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(settings));
        Assert.Contains("Relay:Tls:Password", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Subject_OfACertificateInThePlatformStore_IsServed()
    {
        var name = "relay-store-" + Guid.NewGuid().ToString("N");
        using var stored = TestCertificate.Create(name);
        using var store = new X509Store(StoreName.My, StoreLocation.CurrentUser);
        store.Open(OpenFlags.ReadWrite);
        store.Add(stored.Certificate);
        try
        {
            await using var server = await RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Tls:Subject"] = "CN=" + name });
            var seen = new List<string>();
            await using var client = await ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key), TestCertificate.Accepting(seen, stored));
            Assert.Equal([stored.Thumbprint], seen);
        }
        finally
        {
            store.Remove(stored.Certificate);
        }

        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Tls:Subject"] = "CN=" + name }));
        Assert.Contains("no currently valid certificate", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_WithAMissingFile_StopsTheHost_NamingTheSetting()
    {
        var settings = TlsSettings();
        settings["Relay:Tls:KeyPath"] = Path.Combine(_folder, "missing.key");
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(settings));
        Assert.Contains("Relay:Tls:KeyPath", failure.Message, StringComparison.Ordinal);
        Assert.Contains("does not exist", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_WithAKeyThatIsNotTheCertificates_StopsTheHost_SayingSo()
    {
        using var other = TestCertificate.Create("relay-other");
        var settings = TlsSettings();
        TestCertificate.Replace(KeyPath, other.KeyPem);
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(settings));
        Assert.Contains("the key must be the certificate's own", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_WithAnExpiredCertificate_Serves_AndWarns()
    {
        using var expired = TestCertificate.Create("relay-expired", DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddDays(-1));
        var settings = TlsSettings();
        expired.WriteTo(CertificatePath, KeyPath);
        var log = new LogCapture();
        await using var server = await RelayServer.StartAsync(settings, s => s.AddSingleton<ILoggerProvider>(log));
        Assert.Contains(log.Entries, e => e.EventId.Id == 923 && e.Level == LogLevel.Warning && e.Message.Contains(expired.Thumbprint, StringComparison.Ordinal));
    }

    /// <summary>Opens a new wss:// connection and returns the thumbprint of the certificate its handshake was shown.</summary>
    private static async Task<string> HandshakeThumbprintAsync(RelayServer server, RemoteCertificateValidationCallback check, List<string> seen)
    {
        await using var client = await ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key), check);
        lock (seen)
        {
            return seen[^1];
        }
    }

    private static async Task WaitForAsync(Func<bool> condition, string what)
    {
        for (var i = 0; i < 100 && !condition(); i++)
        {
            await Task.Delay(100);
        }

        Assert.True(condition(), "waited 10 s for " + what);
    }

    private static int FreePort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }
}

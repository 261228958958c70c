using System.Net.WebSockets;
using Relay.Integration.Tests.Distributed;
using Relay.Testing;

namespace Relay.Integration.Tests.Tls;

/// <summary>
/// The standalone host as built, configured the way a deployment is (environment variables only): Kestrel's standard
/// endpoint settings for a plain and an https:// listener, and Relay's certificate from PEM files for the TLS one.
/// </summary>
public sealed class TlsProcessTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("relay-tls-process-").FullName;

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    [Fact]
    public async Task Wss_ToTheStandaloneHostsTlsListener_ReachesSubscribersOnItsPlainOne()
    {
        using var certificate = TestCertificate.Create("relay-process");
        var (certificatePath, keyPath) = (Path.Combine(_folder, "tls.crt"), Path.Combine(_folder, "tls.key"));
        certificate.WriteTo(certificatePath, keyPath);
        var (plainPort, tlsPort) = (RelayCluster.FreePort(), RelayCluster.FreePort());
        var environment = ServiceProcess.TestKeysEnvironment();
        environment["Kestrel__Endpoints__Plain__Url"] = $"http://127.0.0.1:{plainPort}";
        environment["Kestrel__Endpoints__Secure__Url"] = $"https://127.0.0.1:{tlsPort}";
        environment["Relay__Tls__CertificatePath"] = certificatePath;
        environment["Relay__Tls__KeyPath"] = keyPath;
        environment["Relay__Mqtt__TlsPort"] = "0";
        environment["Relay__Tls__Ports__0"] = tlsPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var dll = Path.Combine(RelayCluster.RepositoryRoot, "services", "Relay.Standalone", "bin", "Release", "net10.0", "Relay.Standalone.dll");
        await using var host = await ServiceProcess.StartAsync("standalone-tls", dll, plainPort, environment, _folder);

        var query = $"/v1/realtime?key={Uri.EscapeDataString(RelayServer.Key)}";
        await using var subscriber = await TestSocket.ConnectAsync(new Uri($"ws://127.0.0.1:{plainPort}{query}"));
        await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "tls:process" });
        var seen = new List<string>();
        await using var publisher = await TestSocket.ConnectAsync(new Uri($"wss://127.0.0.1:{tlsPort}{query}"), "relay.v1.json", o => o.RemoteCertificateValidationCallback = TestCertificate.Accepting(seen, certificate));
        await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "tls:process", ["data"] = "secure" });

        Assert.Equal("secure", (await subscriber.ReceiveMessageAsync()).GetProperty("data").GetString());
        Assert.Equal([certificate.Thumbprint], seen);
        using var plainToTls = new ClientWebSocket();
        await Assert.ThrowsAsync<WebSocketException>(() => plainToTls.ConnectAsync(new Uri($"ws://127.0.0.1:{tlsPort}{query}"), CancellationToken.None).WaitAsync(TestSocket.DefaultTimeout));
        Assert.False(host.HasExited, host.Tail());
    }
}

using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Relay.Integration.Tests.Distributed;
using Relay.Testing;

namespace Relay.Integration.Tests.Tls;

/// <summary>
/// The four services as built, as separate processes configured by environment variables as on Kubernetes, over a
/// redis-server that requires a client certificate from the internal CA: each has its own certificate, the auth service
/// serves tokens on its internal listener (client certificate required), and a message goes from a client through the
/// ingress, routing and fan-out back to it. A service without its certificate does not start, and says why.
/// </summary>
public sealed class MutualTlsProcessTests : IAsyncLifetime
{
    private readonly string _folder = Directory.CreateTempSubdirectory("relay-mtls-process-").FullName;
    private readonly TestCertificate _authority = TestCertificate.CreateAuthority("relay-internal-ca");
    private readonly List<IAsyncDisposable> _running = [];
    private RedisServer _redis = null!;

    public async Task InitializeAsync() => _redis = await RedisServer.StartMutualTlsAsync(_authority);

    public async Task DisposeAsync()
    {
        for (var i = _running.Count - 1; i >= 0; i--)
        {
            await _running[i].DisposeAsync();
        }

        await _redis.DisposeAsync();
        _authority.Dispose();
        Directory.Delete(_folder, recursive: true);
    }

    [Fact]
    public async Task ServicesWithTheirCertificates_CarryAMessage_AndIssueTokensOverTheInternalListener()
    {
        var internalPort = RelayCluster.FreePort();
        var auth = Service("auth", withCertificate: true);
        foreach (var (key, value) in ServiceProcess.TestKeysEnvironment())
        {
            auth[key] = value;
        }

        auth["Relay__InternalTls__Port"] = internalPort.ToString(CultureInfo.InvariantCulture);
        await StartAsync("auth", "Relay.Auth", auth);
        await StartAsync("routing", "Relay.Routing", Service("routing", withCertificate: true));
        await StartAsync("fanout", "Relay.FanOut", Service("fanout", withCertificate: true));
        var ingressSettings = Service("ingress", withCertificate: true);
        ingressSettings["Relay__Auth__KeySource"] = "redis";
        ingressSettings["Relay__Ingress__AuthUrl"] = $"https://localhost:{internalPort}/";
        ingressSettings["Relay__Mqtt__Port"] = "0";
        ingressSettings["Relay__Grpc__Port"] = "0";
        var ingress = await StartAsync("ingress", "Relay.Ingress", ingressSettings);

        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{ingress.Port}/"), Timeout = TimeSpan.FromSeconds(30) };
        var token = await TestTokens.RequestAsync(http);
        await using var client = await TestSocket.ConnectAsync(new Uri($"ws://127.0.0.1:{ingress.Port}/v1/realtime?token={Uri.EscapeDataString(token)}"));
        Assert.Equal("ok", (await client.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "mtls:process" })).GetProperty("type").GetString());
        Assert.Equal("ok", (await client.RequestAsync(new() { ["type"] = "publish", ["channel"] = "mtls:process", ["data"] = "through every service" })).GetProperty("type").GetString());
        Assert.Equal("through every service", (await client.ReceiveMessageAsync(TimeSpan.FromSeconds(30))).GetProperty("data").GetString());
    }

    [Fact]
    public async Task ServiceWithoutItsCertificate_DoesNotStart_SayingRedisRefusedIt()
    {
        var failure = await Assert.ThrowsAsync<InvalidOperationException>(() => StartAsync("routing-without", "Relay.Routing", Service("routing-without", withCertificate: false)));
        Assert.Contains("exited with code", failure.Message, StringComparison.Ordinal);
        Assert.Contains("cannot reach Redis", failure.Message, StringComparison.Ordinal);
    }

    // A service's environment: the Redis bus with the CA to check the server against, and with a certificate, the one
    // the CA issued it, for Redis and for calls between services.
    private Dictionary<string, string> Service(string name, bool withCertificate)
    {
        var environment = new Dictionary<string, string>
        {
            ["Relay__Bus"] = "redis",
            ["Relay__Redis__Configuration"] = _redis.Configuration + ",connectTimeout=3000",
            ["Relay__Redis__TrustedCaPath"] = _redis.CaPath,
            ["Relay__Ingress__NodeId"] = name,
            ["OTEL_SERVICE_NAME"] = name,
        };
        if (withCertificate)
        {
            using var certificate = _authority.Issue(name);
            var (certificatePath, keyPath) = certificate.WriteFiles(_folder, name);
            environment["Relay__Redis__ClientCertificatePath"] = certificatePath;
            environment["Relay__Redis__ClientKeyPath"] = keyPath;
            environment["Relay__InternalTls__CertificatePath"] = certificatePath;
            environment["Relay__InternalTls__KeyPath"] = keyPath;
            environment["Relay__InternalTls__CaPath"] = _redis.CaPath;
        }

        return environment;
    }

    private async Task<ServiceProcess> StartAsync(string name, string project, Dictionary<string, string> environment)
    {
        var dll = Path.Combine(RelayCluster.RepositoryRoot, "services", project, "bin", "Release", "net10.0", project + ".dll");
        var service = await ServiceProcess.StartAsync(name, dll, RelayCluster.FreePort(), environment, _folder);
        _running.Add(service);
        return service;
    }

}

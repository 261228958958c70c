using Relay.Testing;

namespace Relay.Services.Tests;

/// <summary>
/// A deployment's internal CA made in the test, a redis-server that requires a client certificate it issued
/// (<c>--tls-auth-clients yes</c>), and the settings that give a Relay service its own certificate from that CA for
/// Redis (<c>Relay:Redis</c>) and for calls between services (<c>Relay:InternalTls</c>). Files live in a temp folder.
/// </summary>
public sealed class MutualTlsRedisFixture : IRedisBusSettings, IAsyncLifetime
{
    private const string LeaseTtl = "00:00:02";

    private readonly List<TestCertificate> _issued = [];
    private RedisServer? _redis;

    /// <summary>The internal CA.</summary>
    public TestCertificate Authority { get; } = TestCertificate.CreateAuthority();

    /// <summary>Where the certificate files are written.</summary>
    public string Directory { get; } = System.IO.Directory.CreateTempSubdirectory("relay-mtls-").FullName;

    /// <summary>The internal CA's certificate file (PEM).</summary>
    public string CaPath => Path.Combine(Directory, "ca.pem");

    public RedisServer Redis => _redis ?? throw new InvalidOperationException("The fixture has not started.");

    /// <summary>Adds the Redis bus on this server with no client certificate (the service's own settings add one).</summary>
    public void AddTo(IDictionary<string, string?> settings)
    {
        settings["Relay:Bus"] = "redis";
        settings["Relay:Redis:Configuration"] = Redis.Configuration + ",connectTimeout=3000";
        settings["Relay:Redis:LeaseTtl"] = LeaseTtl;
        settings["Relay:Redis:TrustedCaPath"] = CaPath;
    }

    /// <summary>
    /// The settings of a service named <paramref name="name"/> with a certificate <paramref name="issuer"/> (the internal
    /// CA by default) issued it: the Redis bus with it as the client certificate, and (unless <paramref name="redisOnly"/>)
    /// the same as its internal one.
    /// </summary>
    public Dictionary<string, string?> Service(string name, TestCertificate? issuer = null, DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null, bool redisOnly = false)
    {
        var certificate = (issuer ?? Authority).Issue(name, notBefore, notAfter);
        lock (_issued)
        {
            _issued.Add(certificate);
        }

        var (certificatePath, keyPath) = certificate.WriteFiles(Directory, name);
        var settings = ServerFixture.Settings();
        AddTo(settings);
        settings["Relay:Redis:ClientCertificatePath"] = certificatePath;
        settings["Relay:Redis:ClientKeyPath"] = keyPath;
        if (redisOnly)
        {
            return settings;
        }

        settings["Relay:InternalTls:CertificatePath"] = certificatePath;
        settings["Relay:InternalTls:KeyPath"] = keyPath;
        settings["Relay:InternalTls:CaPath"] = CaPath;
        return settings;
    }

    public async Task InitializeAsync()
    {
        await File.WriteAllTextAsync(CaPath, Authority.CertificatePem);
        _redis = await RedisServer.StartMutualTlsAsync(Authority);
    }

    public async Task DisposeAsync()
    {
        if (_redis is not null)
        {
            await _redis.DisposeAsync();
        }

        foreach (var certificate in _issued)
        {
            certificate.Dispose();
        }

        Authority.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temp folder is not worth failing a test over.
        }
    }
}

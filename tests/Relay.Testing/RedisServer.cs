using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

using StackExchange.Redis;

namespace Relay.Testing;

/// <summary>
/// A real redis-server on a free loopback port, started from <see cref="ServerPath"/> and stopped by the PID this
/// class started. A missing binary fails the test: these tests are the proof Relay works over Redis.
/// </summary>
public sealed class RedisServer : IAsyncDisposable
{
    public const string ServerPath = "/usr/bin/redis-server";

    private static readonly Lazy<X509Certificate2> s_certificate = new(CreateCertificate);

    private readonly string _directory;
    private readonly StringBuilder _log = new();
    private Process? _process;

    private readonly IReadOnlyList<string> _extraArguments;

    // Mutual TLS: the CA clients' certificates must chain to, and the certificate it issued this server (which also
    // serves as the start-up ping's client certificate).
    private TestCertificate? _authority;
    private TestCertificate? _issued;

    private RedisServer(string? password, bool tls, string directory, bool appendOnly, IReadOnlyList<string>? extraArguments)
    {
        _extraArguments = extraArguments ?? [];
        Password = password;
        Tls = tls;
        _directory = directory;
        AppendOnly = appendOnly;
    }

    public int Port { get; private set; }

    /// <summary>The server's working directory (where SAVE writes dump.rdb, which a restart loads).</summary>
    public string DataDirectory => _directory;

    public string? Password { get; }

    public bool Tls { get; }

    /// <summary>Every write is in the append-only file, fsynced before it is answered: a kill loses nothing, and a restart loads it.</summary>
    public bool AppendOnly { get; }

    /// <summary>The self-signed certificate a TLS server presents (CN and SAN localhost, 127.0.0.1).</summary>
    public static X509Certificate2 Certificate => s_certificate.Value;

    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    public static Task<RedisServer> StartAsync(string? password = null, bool tls = false, bool appendOnly = false) => StartAsync(password, tls, appendOnly, extraArguments: null);

    /// <summary>
    /// Starts a TLS server that requires a client certificate issued by <paramref name="authority"/>
    /// (<c>--tls-auth-clients yes</c>) and serves one that CA issued it (CN redis, for localhost and 127.0.0.1).
    /// </summary>
    public static async Task<RedisServer> StartMutualTlsAsync(TestCertificate authority)
    {
        ArgumentNullException.ThrowIfNull(authority);
        return await StartAsync(null, tls: true, appendOnly: false, extraArguments: null, authority);
    }

    /// <summary>The CA certificate (PEM) a mutual-TLS server's certificate chains to (what <c>Relay:Redis:TrustedCaPath</c> names).</summary>
    public string CaPath => Path.Combine(_directory, "ca.pem");

    /// <summary>Starts a server with more <c>redis-server</c> arguments (e.g. <c>--replicaof host port</c>).</summary>
    public static Task<RedisServer> StartAsync(string? password, bool tls, IReadOnlyList<string>? extraArguments) => StartAsync(password, tls, appendOnly: false, extraArguments);

    private static async Task<RedisServer> StartAsync(string? password, bool tls, bool appendOnly, IReadOnlyList<string>? extraArguments, TestCertificate? authority = null)
    {
        if (!File.Exists(ServerPath))
        {
            throw new InvalidOperationException(
                $"{ServerPath} is missing: the Redis client tests need a real Redis server. Install it with `apt-get install redis-server`.");
        }

        var server = new RedisServer(password, tls, Directory.CreateTempSubdirectory("relay-redis-").FullName, appendOnly, extraArguments);
        if (authority is not null)
        {
            server._authority = authority;
            server._issued = authority.Issue("redis");
            server._issued.WriteTo(Path.Combine(server._directory, "cert.pem"), Path.Combine(server._directory, "key.pem"));
            await File.WriteAllTextAsync(server.CaPath, authority.CertificatePem);
        }
        else if (tls)
        {
            await File.WriteAllTextAsync(Path.Combine(server._directory, "cert.pem"), Certificate.ExportCertificatePem());
            using var key = Certificate.GetECDsaPrivateKey()!;
            await File.WriteAllTextAsync(Path.Combine(server._directory, "key.pem"), key.ExportPkcs8PrivateKeyPem());
        }

        // A port picked free can be taken before redis binds it; try a few.
        for (var attempt = 1; ; attempt++)
        {
            server.Port = FreePort();
            try
            {
                await server.StartProcessAsync();
                return server;
            }
            catch (InvalidOperationException) when (attempt < 5 && server.Log.Contains("Address already in use", StringComparison.Ordinal))
            {
            }
        }
    }

    /// <summary>The StackExchange.Redis configuration string of this server (what <c>Relay:Redis:Configuration</c> takes).</summary>
    public string Configuration =>
        $"127.0.0.1:{Port.ToString(System.Globalization.CultureInfo.InvariantCulture)}" + (Password is null ? "" : ",password=" + Password) + (Tls ? ",ssl=true,sslHost=localhost" : "");

    /// <summary>
    /// Test client options for <paramref name="configuration"/>: quick to notice a restart or a failover (250 ms
    /// heartbeats, a retry every 100 ms), admin commands allowed.
    /// </summary>
    public static ConfigurationOptions QuickClientOptions(string configuration)
    {
        var options = ConfigurationOptions.Parse(configuration);
        options.AbortOnConnectFail = false;
        options.ConnectTimeout = 5000;
        options.AsyncTimeout = 5000;
        options.SyncTimeout = 5000;
        options.HeartbeatInterval = TimeSpan.FromMilliseconds(250);
        options.ReconnectRetryPolicy = new LinearRetry(100);
        options.AllowAdmin = true;
        return options;
    }

    /// <summary>
    /// Client options for this server (TLS pinned to the test certificate; under mutual TLS, to the one the CA issued it,
    /// presented as the client's too), quick to notice a restart.
    /// </summary>
    public ConfigurationOptions Options()
    {
        var options = QuickClientOptions(Configuration);
        if (_issued is { } issued)
        {
            options.CertificateValidation += (_, certificate, _, _) => certificate is not null && certificate.GetCertHashString() == issued.Thumbprint;
            options.CertificateSelection += (_, _, _, _, _) => issued.Certificate;
        }
        else if (Tls)
        {
            options.CertificateValidation += PinnedCertificate;
        }

        return options;
    }

    /// <summary>A multiplexer on this server, with Relay's scripts loaded (as the services' <c>RedisConnector</c> makes it).</summary>
    public Task<IConnectionMultiplexer> ConnectAsync() => Relay.Bus.Redis.RedisConnector.ConnectAsync(Options());

    public static bool PinnedCertificate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors) =>
        certificate is not null && certificate.GetCertHashString() == Certificate.GetCertHashString();

    /// <summary>SIGKILL, as a crash would: no goodbye to clients.</summary>
    public void Kill()
    {
        if (_process is { HasExited: false } process)
        {
            process.Kill();
            process.WaitForExit(5000);
        }

        _process?.Dispose();
        _process = null;
    }

    /// <summary>Freezes the server (SIGSTOP to the PID this class started): it holds its connections and answers nothing.</summary>
    public void Pause() => Signal("-STOP");

    /// <summary>Lets a paused server run again (SIGCONT).</summary>
    public void Resume() => Signal("-CONT");

    private void Signal(string signal)
    {
        var pid = _process?.Id ?? throw new InvalidOperationException("the server is not running");
        using var kill = Process.Start("kill", [signal, pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]) ?? throw new InvalidOperationException("could not run kill");
        kill.WaitForExit(5000);
    }

    /// <summary>Starts again on the same port: empty, unless a SAVE left dump.rdb in <see cref="DataDirectory"/> or it is <see cref="AppendOnly"/>.</summary>
    public Task RestartAsync()
    {
        Kill();
        return StartProcessAsync();
    }

    private async Task StartProcessAsync()
    {
        var info = new ProcessStartInfo(ServerPath)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = _directory,
        };
        foreach (var arg in Arguments())
        {
            info.ArgumentList.Add(arg);
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException($"Could not start {ServerPath}.");
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;

        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            if (process.HasExited)
            {
                await process.WaitForExitAsync();
                throw new InvalidOperationException($"redis-server exited with {process.ExitCode} on port {Port}:\n{Log}");
            }

            if (await AnswersPingAsync())
            {
                return;
            }

            if (DateTime.UtcNow > deadline)
            {
                Kill();
                throw new InvalidOperationException($"redis-server did not answer PING on port {Port} within 10 s:\n{Log}");
            }

            await Task.Delay(20);
        }
    }

    private IEnumerable<string> Arguments()
    {
        yield return "--bind";
        yield return "127.0.0.1";
        if (Tls)
        {
            yield return "--port";
            yield return "0";
            yield return "--tls-port";
            yield return Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
            yield return "--tls-cert-file";
            yield return Path.Combine(_directory, "cert.pem");
            yield return "--tls-key-file";
            yield return Path.Combine(_directory, "key.pem");
            if (_authority is null)
            {
                yield return "--tls-auth-clients";
                yield return "no";
            }
            else
            {
                yield return "--tls-ca-cert-file";
                yield return CaPath;
                yield return "--tls-auth-clients";
                yield return "yes";
            }
        }
        else
        {
            yield return "--port";
            yield return Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        yield return "--save";
        yield return "";
        yield return "--appendonly";
        yield return AppendOnly ? "yes" : "no";
        if (AppendOnly)
        {
            yield return "--appendfsync";
            yield return "always";
        }

        yield return "--dir";
        yield return _directory;
        foreach (var argument in _extraArguments)
        {
            yield return argument;
        }

        if (Password is not null)
        {
            yield return "--requirepass";
            yield return Password;
        }
    }

    private async Task<bool> AnswersPingAsync()
    {
        try
        {
            using var client = new TcpClient();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await client.ConnectAsync(IPAddress.Loopback, Port, timeout.Token);
            Stream stream = client.GetStream();
            if (Tls)
            {
                var ssl = new SslStream(stream, false, (_, _, _, _) => true);
                await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = "localhost", ClientCertificates = _issued is null ? null : [_issued.Certificate] }, timeout.Token);
                stream = ssl;
            }

            await stream.WriteAsync("PING\r\n"u8.ToArray(), timeout.Token);
            var buffer = new byte[64];
            var read = await stream.ReadAsync(buffer, timeout.Token);
            var reply = Encoding.ASCII.GetString(buffer, 0, read);

            // With requirepass, NOAUTH is the server answering too.
            return reply.StartsWith("+PONG", StringComparison.Ordinal) || reply.StartsWith("-NOAUTH", StringComparison.Ordinal);
        }
        catch (Exception ex) when (ex is SocketException or IOException or OperationCanceledException or System.Security.Authentication.AuthenticationException)
        {
            return false;
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_log)
        {
            _log.AppendLine(line);
        }
    }

    /// <summary>A loopback port free right now.</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static X509Certificate2 CreateCertificate()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(7));
    }

    public ValueTask DisposeAsync()
    {
        Kill();
        _issued?.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temp folder is not worth failing a test over.
        }

        return ValueTask.CompletedTask;
    }
}

using System.Globalization;
using System.Security.Cryptography;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

/// <summary>The Redis bus, bound from <c>Relay:Redis</c>; used when <c>Relay:Bus</c> is <c>redis</c>.</summary>
public sealed class RedisBusOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "Relay:Redis";

    /// <summary>The setting that picks the bus: <c>memory</c> (default, one process) or <c>redis</c>.</summary>
    public const string BusKey = "Relay:Bus";

    /// <summary>Redis commands may take this long before they fail (a stalled server, a failover): routing then answers 50300.</summary>
    public static readonly TimeSpan DefaultCommandTimeout = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How often the client checks its connections: a dead server is noticed, and reconnecting starts, within about this
    /// (StackExchange.Redis's default of 1 s made every Redis restart a second longer for publishers).
    /// </summary>
    public static readonly TimeSpan HeartbeatInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// A StackExchange.Redis configuration string: <c>host:port[,host:port…][,password=…][,user=…][,ssl=true]</c>
    /// <c>[,serviceName=…]</c> (Sentinel: the hosts are sentinels) <c>[,defaultDatabase=…]</c> and its other options.
    /// </summary>
    public string? Configuration { get; set; }

    /// <summary>The older form: the Redis server, <c>host:port</c> (port 6379 when left out); use <see cref="Configuration"/>.</summary>
    public string? Endpoint { get; set; }

    /// <summary>With <see cref="Endpoint"/>: ACL user (Redis 6+), with <see cref="Password"/>.</summary>
    public string? User { get; set; }

    /// <summary>With <see cref="Endpoint"/>: password (AUTH).</summary>
    public string? Password { get; set; }

    /// <summary>With <see cref="Endpoint"/>: database number (SELECT).</summary>
    public int Database { get; set; }

    /// <summary>With <see cref="Endpoint"/>: connect over TLS.</summary>
    public bool Tls { get; set; }

    /// <summary>
    /// A client certificate this process presents to Redis (mutual TLS: a server run with <c>tls-auth-clients yes</c>):
    /// a PEM certificate with its key in <see cref="ClientKeyPath"/> (or in the same file), or a PKCS#12 file
    /// (<c>.pfx</c>/<c>.p12</c>) with <see cref="ClientCertificatePassword"/>. Read again on every connect, so a renewed
    /// file is used from the next reconnect. Needs TLS (<c>ssl=true</c>).
    /// </summary>
    public string? ClientCertificatePath { get; set; }

    /// <summary>The PEM private key of <see cref="ClientCertificatePath"/> (unencrypted PKCS#8, PKCS#1 or SEC1).</summary>
    public string? ClientKeyPath { get; set; }

    /// <summary>The password of a PKCS#12 <see cref="ClientCertificatePath"/>.</summary>
    public string? ClientCertificatePassword { get; set; }

    /// <summary>
    /// A PEM CA certificate the Redis server's certificate must chain to when the machine does not trust it (a private
    /// CA); the server's name is still checked against the host connected to (or <c>sslHost</c>).
    /// </summary>
    public string? TrustedCaPath { get; set; }

    /// <summary>How many shards channels are spread over (stable hash of app and channel), for routing and for fan-out alike. Every process must agree.</summary>
    public int Shards { get; set; } = 16;

    /// <summary>How long a routing instance's shard lease lasts without renewal (renewed every third of it); a dead instance's shards move after this.</summary>
    public TimeSpan LeaseTtl { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>
    /// How long a fan-out process's shard lease lasts without renewal (renewed every third of it). A dead fan-out's shards
    /// move to the others after this, and a process that could not renew for this long stops delivering those shards.
    /// </summary>
    public TimeSpan FanOutLeaseTtl { get; set; } = DefaultFanOutLeaseTtl;

    /// <summary>As routing's lease: a killed fan-out's channels go quiet for at most about this, and a renewal every second survives a busy host.</summary>
    public static readonly TimeSpan DefaultFanOutLeaseTtl = TimeSpan.FromSeconds(3);

    /// <summary>How long an ingress node counts as alive without a heartbeat (sent every third of it); then its interest and presence go.</summary>
    public TimeSpan NodeTtl { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long a request to routing may take, including waiting for a shard to get an owner.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Redis command timeout (StackExchange.Redis's async and sync timeouts, unless the configuration string sets them).</summary>
    public TimeSpan CommandTimeout { get; set; } = DefaultCommandTimeout;

    /// <summary>
    /// Replicas that must hold a publish before it is acknowledged (Redis <c>WAIT</c> after the appends of each publish
    /// request). 0 (default): acknowledged once the master has it, so a failover (Sentinel) can lose what the replica had
    /// not received yet. With 1 or more, nothing acknowledged is lost when a replica is promoted, at a round trip to the
    /// replicas per request; <c>WAIT</c> holds the connection it runs on, so every command of the process waits behind it.
    /// </summary>
    public int ReplicasToAcknowledge { get; set; }

    /// <summary>How long a publish waits for <see cref="ReplicasToAcknowledge"/> before it is answered 50300 (publish again with the same id).</summary>
    public TimeSpan ReplicationTimeout { get; set; } = DefaultReplicationTimeout;

    /// <summary>Long enough for a replica on the same network under load, short enough that a publish to a lost replica fails within a client's patience.</summary>
    public static readonly TimeSpan DefaultReplicationTimeout = TimeSpan.FromSeconds(1);

    /// <summary>Largest batch of messages fan-out sends to a node in one PUBLISH.</summary>
    public int MaxBatchBytes { get; set; } = 256 * 1024;

    /// <summary>Whether a Redis server is configured (either form).</summary>
    public bool IsConfigured => !string.IsNullOrWhiteSpace(Configuration) || !string.IsNullOrWhiteSpace(Endpoint);

    /// <summary>What the connection is made from, for messages (no password).</summary>
    public string Describe()
    {
        if (!IsConfigured)
        {
            return "(not configured)";
        }

        try
        {
            return ToConfigurationOptions().ToString(includePassword: false);
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException or IOException)
        {
            return Endpoint ?? "(invalid configuration)";
        }
    }

    /// <summary>
    /// StackExchange.Redis options for <see cref="Configuration"/> (or the older <see cref="Endpoint"/> settings), with
    /// Relay's defaults where the string does not say: fail the first connect (start-up stops with a message), the command
    /// timeout, a quick heartbeat and reconnect, and a client name.
    /// </summary>
    public ConfigurationOptions ToConfigurationOptions()
    {
        ConfigurationOptions options;
        var text = Configuration ?? "";
        if (!string.IsNullOrWhiteSpace(Configuration))
        {
            options = ConfigurationOptions.Parse(Configuration);
        }
        else
        {
            options = new ConfigurationOptions { User = User, Password = Password, Ssl = Tls };
            var endpoint = (Endpoint ?? "").Trim();
            var colon = endpoint.LastIndexOf(':');
            var host = colon > 0 ? endpoint[..colon] : endpoint;
            var port = colon > 0 && int.TryParse(endpoint[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var parsed) ? parsed : 6379;
            options.EndPoints.Add(host.Trim('[', ']'), port);
            if (Database != 0)
            {
                options.DefaultDatabase = Database;
            }
        }

        if (!Says(text, "abortConnect"))
        {
            options.AbortOnConnectFail = true;
        }

        var timeoutMs = (int)Math.Ceiling(CommandTimeout.TotalMilliseconds);
        if (!Says(text, "asyncTimeout"))
        {
            options.AsyncTimeout = timeoutMs;
        }

        if (!Says(text, "syncTimeout"))
        {
            options.SyncTimeout = timeoutMs;
        }

        if (!Says(text, "name"))
        {
            options.ClientName = "relay-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        }

        options.HeartbeatInterval = HeartbeatInterval;
        options.ReconnectRetryPolicy = new ExponentialRetry(100, 2000);
        ApplyCertificates(options);
        return options;
    }

    /// <summary>Whether a client certificate is configured (<see cref="ClientCertificatePath"/>).</summary>
    public bool HasClientCertificate => !string.IsNullOrWhiteSpace(ClientCertificatePath);

    // StackExchange.Redis's own hooks: the certificate is read from the files on each connect, and the server's chain is
    // built to the CA with only chain errors forgiven (a name mismatch still fails). Every multiplexer Relay opens (the
    // connector's, Sentinel's and the pinned subscriber's) comes from ToConfigurationOptions, so all present it.
    private void ApplyCertificates(ConfigurationOptions options)
    {
        if (HasClientCertificate)
        {
            if (Relay.ServiceDefaults.Tls.CertificateFiles.IsPkcs12(ClientCertificatePath!))
            {
                options.SetUserPfxCertificate(ClientCertificatePath!, ClientCertificatePassword);
            }
            else
            {
                options.SetUserPemCertificate(ClientCertificatePath!, string.IsNullOrWhiteSpace(ClientKeyPath) ? null : ClientKeyPath);
            }
        }

        if (!string.IsNullOrWhiteSpace(TrustedCaPath))
        {
            options.TrustIssuer(TrustedCaPath);
        }
    }

    private static bool Says(string configuration, string option) =>
        configuration.Contains(option + "=", StringComparison.OrdinalIgnoreCase);
}

/// <summary>
/// Checks <c>Relay:Bus</c> and <c>Relay:Redis</c>, with messages that name the setting: all of it on a host whose bus is
/// Redis (<paramref name="busIsRedis"/>), only the connection settings given on one whose bus is in memory.
/// </summary>
internal sealed class RedisBusOptionsValidator(IConfiguration configuration, bool busIsRedis, TimeProvider time) : IValidateOptions<RedisBusOptions>
{
    private const string Example = "e.g. Relay__Redis__Configuration=127.0.0.1:6379, or 'h1:6379,h2:6379,password=…,ssl=true' or 'sentinel1:26379,serviceName=mymaster'";

    public ValidateOptionsResult Validate(string? name, RedisBusOptions options)
    {
        var bus = configuration[RedisBusOptions.BusKey];
        if (!string.IsNullOrEmpty(bus) && !RedisBusServiceCollectionExtensions.IsMemory(bus) && !RedisBusServiceCollectionExtensions.IsRedis(bus)
            && !string.Equals(bus, "dapr", StringComparison.OrdinalIgnoreCase))
        {
            return ValidateOptionsResult.Fail($"Relay:Bus is '{bus}'; use 'memory' (one process) or 'redis' (services in separate processes, with Relay:Redis:Configuration), or 'dapr' (the hops through Dapr sidecars, channel state in Redis).");
        }

        var errors = new List<string>();
        // The files first: the connection settings are parsed with them applied.
        RedisCertificateCheck.Validate(options, time.GetUtcNow(), errors);
        if (errors.Count == 0)
        {
            ValidateConnection(options, required: busIsRedis, errors);
        }

        if (!busIsRedis)
        {
            return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
        }

        if (options.Shards is < 1 or > 4096)
        {
            errors.Add($"Relay:Redis:Shards is {options.Shards}; use 1 to 4096, the same in every process.");
        }

        if (options.LeaseTtl < TimeSpan.FromMilliseconds(300))
        {
            errors.Add($"Relay:Redis:LeaseTtl is {options.LeaseTtl}; use at least 00:00:00.3.");
        }

        if (options.FanOutLeaseTtl < TimeSpan.FromMilliseconds(300))
        {
            errors.Add($"Relay:Redis:FanOutLeaseTtl is {options.FanOutLeaseTtl}; use at least 00:00:00.3 (renewed every third of it).");
        }

        if (options.NodeTtl < TimeSpan.FromMilliseconds(300))
        {
            errors.Add($"Relay:Redis:NodeTtl is {options.NodeTtl}; use at least 00:00:00.3.");
        }

        if (options.RequestTimeout <= options.LeaseTtl)
        {
            errors.Add($"Relay:Redis:RequestTimeout ({options.RequestTimeout}) must be longer than LeaseTtl ({options.LeaseTtl}), so a request outlasts a shard handover.");
        }

        if (options.CommandTimeout < TimeSpan.FromMilliseconds(100))
        {
            errors.Add($"Relay:Redis:CommandTimeout is {options.CommandTimeout}; use at least 00:00:00.1.");
        }

        if (options.ReplicasToAcknowledge is < 0 or > 16)
        {
            errors.Add($"Relay:Redis:ReplicasToAcknowledge is {options.ReplicasToAcknowledge}; use 0 (no wait) to 16, at most the replicas the master has.");
        }

        if (options.ReplicasToAcknowledge > 0 && (options.ReplicationTimeout < TimeSpan.FromMilliseconds(10) || options.ReplicationTimeout >= options.RequestTimeout))
        {
            errors.Add($"Relay:Redis:ReplicationTimeout is {options.ReplicationTimeout}; use at least 00:00:00.01 and less than RequestTimeout ({options.RequestTimeout}).");
        }

        if (options.MaxBatchBytes < 1024)
        {
            errors.Add($"Relay:Redis:MaxBatchBytes is {options.MaxBatchBytes}; use at least 1024.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    /// <summary>The connection settings' errors (also for hosts that use Redis without the bus, such as auth's key source).</summary>
    internal static void ValidateConnection(RedisBusOptions options, bool required, List<string> errors)
    {
        var hasConfiguration = !string.IsNullOrWhiteSpace(options.Configuration);
        var hasEndpoint = !string.IsNullOrWhiteSpace(options.Endpoint);
        if (hasConfiguration && (hasEndpoint || options.User is not null || options.Password is not null || options.Database != 0 || options.Tls))
        {
            errors.Add("Relay:Redis:Configuration and the older Relay:Redis:Endpoint/User/Password/Database/Tls are both set: keep only Configuration and write the rest into it (e.g. 'host:6379,user=…,password=…,defaultDatabase=1,ssl=true').");
            return;
        }

        if (!hasConfiguration && !hasEndpoint)
        {
            if (required)
            {
                errors.Add($"Relay:Redis:Configuration is required when Relay:Bus is 'redis' or 'dapr' (Redis keeps channel state: seq, history, presence): set it to a StackExchange.Redis configuration string ({Example}).");
            }

            return;
        }

        ConfigurationOptions parsed;
        try
        {
            parsed = options.ToConfigurationOptions();
        }
        catch (ArgumentException e)
        {
            errors.Add($"Relay:Redis:Configuration '{Redact(options.Configuration)}' is not a StackExchange.Redis configuration string ({e.Message}); {Example}.");
            return;
        }

        if (parsed.EndPoints.Count == 0)
        {
            errors.Add($"Relay:Redis:Configuration names no server: start it with host:port ({Example}).");
        }

        if (hasEndpoint && !hasConfiguration && (options.Database < 0 || parsed.EndPoints.Count != 1))
        {
            errors.Add($"Relay:Redis:Endpoint '{options.Endpoint}' is not host:port; better, use Relay:Redis:Configuration ({Example}).");
        }
    }

    private static string Redact(string? configuration)
    {
        if (configuration is null)
        {
            return "";
        }

        var parts = configuration.Split(',');
        for (var i = 0; i < parts.Length; i++)
        {
            if (parts[i].TrimStart().StartsWith("password=", StringComparison.OrdinalIgnoreCase))
            {
                parts[i] = "password=***";
            }
        }

        return string.Join(',', parts);
    }
}

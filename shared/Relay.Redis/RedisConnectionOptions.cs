using System.Diagnostics.Metrics;
using System.Net.Security;

namespace Relay.Redis;

/// <summary>Where and how to connect. <see cref="Validate"/> runs before any connection is made.</summary>
public sealed class RedisConnectionOptions
{
    /// <summary>Host name or IP address of the server.</summary>
    public string Host { get; set; } = "localhost";

    /// <summary>TCP port (TLS port when <see cref="Tls"/> is set).</summary>
    public int Port { get; set; } = 6379;

    /// <summary>ACL user for AUTH/HELLO; null means the <c>default</c> user. Needs <see cref="Password"/>.</summary>
    public string? Username { get; set; }

    /// <summary>Password for AUTH/HELLO; null sends no AUTH.</summary>
    public string? Password { get; set; }

    /// <summary>Logical database chosen with SELECT after every (re)connect.</summary>
    public int Database { get; set; }

    /// <summary>Speak RESP3 (HELLO 3) instead of RESP2.</summary>
    public bool Resp3 { get; set; }

    /// <summary>Bound on TCP connect, TLS and the handshake (HELLO/AUTH/SELECT) together.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Bound on one command from the call to its reply, including any wait for a reconnect. A command that times
    /// out after it was sent breaks the connection (its reply could no longer be matched) and it reconnects.
    /// </summary>
    public TimeSpan CommandTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Wrap the connection in TLS.</summary>
    public bool Tls { get; set; }

    /// <summary>Name the server's certificate must carry; <see cref="Host"/> when null.</summary>
    public string? TlsTargetHost { get; set; }

    /// <summary>Custom certificate check (a private CA, a pinned certificate); the system's validation when null.</summary>
    public RemoteCertificateValidationCallback? TlsCertificateValidation { get; set; }

    /// <summary>First delay before a reconnect attempt after a failed one; doubles per attempt, with jitter.</summary>
    public TimeSpan ReconnectMinDelay { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Largest delay between reconnect attempts.</summary>
    public TimeSpan ReconnectMaxDelay { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Where the <c>Relay.Redis</c> meter comes from (the host's, so <c>/metrics</c> shows it): commands, errors by
    /// kind, reconnects, connected state and round-trip time, tagged <c>connection</c> = <c>command</c> or
    /// <c>subscriber</c>. Connections given the same factory share one set of instruments. Null records nothing.
    /// </summary>
    public IMeterFactory? MeterFactory { get; set; }

    internal string EndpointName => $"{Host}:{Port}";

    /// <summary>Every problem with these options, one clear sentence each; empty when they are usable.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(Host))
        {
            errors.Add("RedisConnectionOptions.Host must be a host name or IP address.");
        }

        if (Port is < 1 or > 65535)
        {
            errors.Add($"RedisConnectionOptions.Port must be between 1 and 65535 (was {Port}).");
        }

        if (Username is not null && Password is null)
        {
            errors.Add("RedisConnectionOptions.Username needs a Password (AUTH takes both).");
        }

        if (Database < 0)
        {
            errors.Add($"RedisConnectionOptions.Database must be 0 or more (was {Database}).");
        }

        CheckPositive(errors, nameof(ConnectTimeout), ConnectTimeout);
        CheckPositive(errors, nameof(CommandTimeout), CommandTimeout);
        CheckPositive(errors, nameof(ReconnectMinDelay), ReconnectMinDelay);
        CheckPositive(errors, nameof(ReconnectMaxDelay), ReconnectMaxDelay);
        if (ReconnectMaxDelay < ReconnectMinDelay)
        {
            errors.Add($"RedisConnectionOptions.ReconnectMaxDelay ({ReconnectMaxDelay}) must not be less than ReconnectMinDelay ({ReconnectMinDelay}).");
        }

        if (!Tls && (TlsTargetHost is not null || TlsCertificateValidation is not null))
        {
            errors.Add("RedisConnectionOptions.TlsTargetHost and TlsCertificateValidation only apply with Tls = true.");
        }

        return errors;
    }

    internal RedisConnectionOptions ValidatedCopy()
    {
        var errors = Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException("Invalid Redis connection options: " + string.Join(" ", errors));
        }

        // A copy, so a caller changing its object later cannot change a live connection.
        return (RedisConnectionOptions)MemberwiseClone();
    }

    private static void CheckPositive(List<string> errors, string name, TimeSpan value)
    {
        if (value <= TimeSpan.Zero || value > TimeSpan.FromDays(1))
        {
            errors.Add($"RedisConnectionOptions.{name} must be more than zero and at most one day (was {value}).");
        }
    }
}

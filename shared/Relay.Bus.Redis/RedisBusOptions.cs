using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;
using Relay.Redis;

namespace Relay.Bus.Redis;

/// <summary>The Redis bus, bound from <c>Relay:Redis</c>; used when <c>Relay:Bus</c> is <c>redis</c>.</summary>
public sealed class RedisBusOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "Relay:Redis";

    /// <summary>The setting that picks the bus: <c>memory</c> (default, one process) or <c>redis</c>.</summary>
    public const string BusKey = "Relay:Bus";

    /// <summary>The Redis server, <c>host:port</c> (port 6379 when left out).</summary>
    public string? Endpoint { get; set; }

    /// <summary>ACL user (Redis 6+), with <see cref="Password"/>.</summary>
    public string? User { get; set; }

    /// <summary>Password (AUTH).</summary>
    public string? Password { get; set; }

    /// <summary>Database number (SELECT).</summary>
    public int Database { get; set; }

    /// <summary>Connect over TLS.</summary>
    public bool Tls { get; set; }

    /// <summary>How many routing shards channels are spread over (stable hash of app and channel). Every process must agree.</summary>
    public int Shards { get; set; } = 16;

    /// <summary>How long a routing instance's shard lease lasts without renewal (renewed every third of it); a dead instance's shards move after this.</summary>
    public TimeSpan LeaseTtl { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>How long an ingress node counts as alive without a heartbeat (sent every third of it); then its interest and presence go.</summary>
    public TimeSpan NodeTtl { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long a request to routing may take, including waiting for a shard to get an owner.</summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Redis command timeout.</summary>
    public TimeSpan CommandTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Largest batch of messages fan-out sends to a node in one PUBLISH.</summary>
    public int MaxBatchBytes { get; set; } = 256 * 1024;

    /// <summary>The connection options of <see cref="Endpoint"/>.</summary>
    public RedisConnectionOptions ToConnectionOptions()
    {
        var endpoint = Endpoint ?? "";
        var colon = endpoint.LastIndexOf(':');
        var host = colon > 0 ? endpoint[..colon] : endpoint;
        var port = colon > 0 && int.TryParse(endpoint[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var parsed) ? parsed : 6379;
        return new RedisConnectionOptions
        {
            Host = host.Trim('[', ']'),
            Port = port,
            Username = User,
            Password = Password,
            Database = Database,
            Tls = Tls,
            CommandTimeout = CommandTimeout,
        };
    }
}

/// <summary>Checks <c>Relay:Bus</c> and, when it is <c>redis</c>, <c>Relay:Redis</c>, with messages that name the setting.</summary>
internal sealed class RedisBusOptionsValidator(IConfiguration configuration) : IValidateOptions<RedisBusOptions>
{
    public ValidateOptionsResult Validate(string? name, RedisBusOptions options)
    {
        var bus = configuration[RedisBusOptions.BusKey];
        if (!string.IsNullOrEmpty(bus) && !RedisBusServiceCollectionExtensions.IsMemory(bus) && !RedisBusServiceCollectionExtensions.IsRedis(bus))
        {
            return ValidateOptionsResult.Fail($"Relay:Bus is '{bus}'; use 'memory' (one process) or 'redis' (services in separate processes, with Relay:Redis:Endpoint).");
        }

        if (!RedisBusServiceCollectionExtensions.IsRedis(bus))
        {
            return ValidateOptionsResult.Success;
        }

        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(options.Endpoint))
        {
            errors.Add("Relay:Redis:Endpoint is required when Relay:Bus is 'redis': set it to the Redis server's host:port (e.g. Relay__Redis__Endpoint=127.0.0.1:6379).");
        }
        else
        {
            errors.AddRange(options.ToConnectionOptions().Validate().Select(static e => "Relay:Redis: " + e));
        }

        if (options.Shards is < 1 or > 4096)
        {
            errors.Add($"Relay:Redis:Shards is {options.Shards}; use 1 to 4096, the same in every process.");
        }

        if (options.LeaseTtl < TimeSpan.FromMilliseconds(300))
        {
            errors.Add($"Relay:Redis:LeaseTtl is {options.LeaseTtl}; use at least 00:00:00.3.");
        }

        if (options.NodeTtl < TimeSpan.FromMilliseconds(300))
        {
            errors.Add($"Relay:Redis:NodeTtl is {options.NodeTtl}; use at least 00:00:00.3.");
        }

        if (options.RequestTimeout <= options.LeaseTtl)
        {
            errors.Add($"Relay:Redis:RequestTimeout ({options.RequestTimeout}) must be longer than LeaseTtl ({options.LeaseTtl}), so a request outlasts a shard handover.");
        }

        if (options.MaxBatchBytes < 1024)
        {
            errors.Add($"Relay:Redis:MaxBatchBytes is {options.MaxBatchBytes}; use at least 1024.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}

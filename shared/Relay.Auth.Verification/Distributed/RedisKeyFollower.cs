using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Auth.Verification.Keys;
using Relay.Bus.Redis;
using StackExchange.Redis;

namespace Relay.Auth.Verification.Distributed;

/// <summary>
/// On an ingress node with <c>Relay:Auth:KeySource=redis</c>: loads the keys and the trusted signing keys the auth service
/// published, and reloads them when the version moves (checked every second), so a key removed from the auth service is
/// revoked everywhere within a second or two. Ready (<c>/readyz</c>) once keys were loaded.
/// </summary>
internal sealed partial class RedisKeyFollower(
    IOptions<RelayAuthOptions> auth,
    IOptions<RedisBusOptions> redis,
    RedisConnector connector,
    KeyStore keys,
    ILogger<RedisKeyFollower> logger) : BackgroundService, IHealthCheck
{
    private long _version = -1;

    private bool Following => auth.Value.KeySource == "redis";

    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(!Following || Interlocked.Read(ref _version) > 0
            ? HealthCheckResult.Healthy($"keys version {Interlocked.Read(ref _version)}")
            : HealthCheckResult.Unhealthy("no keys from the auth service in Redis yet (start Relay.Auth with Relay__Bus=redis)"));

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!Following)
        {
            return;
        }

        if (!redis.Value.IsConfigured)
        {
            throw new InvalidOperationException("Relay:Auth:KeySource is 'redis' but Relay:Redis:Configuration is not set: set it to the Redis the auth service publishes to (e.g. host:6379).");
        }

        IDatabase connection;
        try
        {
            connection = (await connector.ConnectAsync().WaitAsync(stoppingToken).ConfigureAwait(false)).GetDatabase();
        }
        catch (OperationCanceledException)
        {
            return;
        }

        {
            var waiting = true;
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    var version = await connection.StringGetAsync(RedisKeys.AuthVersion).ConfigureAwait(false);
                    if (version.IsNull && waiting)
                    {
                        LogWaiting(logger);
                        waiting = false;
                    }
                    else if (!version.IsNull && (long)version != Interlocked.Read(ref _version))
                    {
                        await LoadAsync(connection, (long)version).ConfigureAwait(false);
                    }
                }
                catch (Exception e) when (e is RedisException or TimeoutException or JsonException or KeyNotFoundException or FormatException)
                {
                    LogLoadFailed(logger, e.Message);
                }

                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private async Task LoadAsync(IDatabase connection, long version)
    {
        var published = await connection.HashGetAllAsync(RedisKeys.AuthKeys).ConfigureAwait(false);
        var signers = await connection.HashGetAllAsync(RedisKeys.AuthSigners).ConfigureAwait(false);
        var loaded = published.Select(static entry => KeyDirectoryJson.Decode(((ReadOnlyMemory<byte>)entry.Value).Span)).ToList();
        var trusted = new Dictionary<string, ECDsa>(StringComparer.Ordinal);
        foreach (var entry in signers)
        {
            var key = ECDsa.Create();
            key.ImportSubjectPublicKeyInfo(Convert.FromBase64String((string)entry.Value!), out _);
            trusted[(string)entry.Name!] = key;
        }

        // The auth service publishes the same keys every 30 s: only a real change moves the store's version.
        var changed = keys.Replace(loaded);
        keys.ReplacePeerSigningKeys(trusted);
        Interlocked.Exchange(ref _version, version);
        if (changed)
        {
            LogLoaded(logger, loaded.Count, trusted.Count, version);
        }
    }

    [LoggerMessage(EventId = 3110, Level = LogLevel.Information, Message = "Loaded {Keys} keys and {Signers} signing keys from Redis (version {Version})")]
    private static partial void LogLoaded(ILogger logger, int keys, int signers, long version);

    [LoggerMessage(EventId = 3111, Level = LogLevel.Warning, Message = "No keys in Redis yet: start the auth service (Relay.Auth) with Relay__Bus=redis; until then every credential is refused")]
    private static partial void LogWaiting(ILogger logger);

    [LoggerMessage(EventId = 3112, Level = LogLevel.Warning, Message = "Could not load keys from Redis: {Reason}")]
    private static partial void LogLoadFailed(ILogger logger, string reason);
}

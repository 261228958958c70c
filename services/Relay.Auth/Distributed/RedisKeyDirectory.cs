using System.Buffers;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Auth.Keys;
using Relay.Bus.Redis;
using Relay.Core.Auth;
using StackExchange.Redis;

namespace Relay.Auth.Distributed;

/// <summary>
/// Apps, keys and Relay's token-signing public keys shared through Redis, so ingress nodes verify credentials locally
/// (no call per message) with what the auth service holds. The auth service publishes (<see cref="RedisKeyPublisher"/>);
/// ingress nodes with <c>Relay:Auth:KeySource=redis</c> follow (<see cref="RedisKeyFollower"/>).
/// </summary>
/// <remarks>
/// Keys: <c>relay:{relay:auth}:keys</c> (hash: <c>APPID.KEYID</c> → JSON with app, id, secret, capabilities),
/// <c>relay:{relay:auth}:signers</c> (hash: JWKS kid → SubjectPublicKeyInfo, base64), <c>relay:{relay:auth}:version</c> (a
/// counter bumped on every publish); one hash tag, so the publish script's three keys are one Redis Cluster slot. Secrets sit in Redis because HS256 tokens are verified with them: protect Redis (AUTH, TLS, private network)
/// as you protect the auth service's configuration.
/// </remarks>
internal static class RedisKeyDirectory
{
    public const string KeysKey = RedisKeys.AuthKeys;
    public const string SignersKey = RedisKeys.AuthSigners;
    public const string VersionKey = RedisKeys.AuthVersion;

    private static readonly (Operations Operation, string Name)[] OperationNames =
        [(Operations.Subscribe, "subscribe"), (Operations.Publish, "publish"), (Operations.Presence, "presence"), (Operations.History, "history")];

    // KEYS: keys, signers, version. ARGV: signer kid, signer SPKI, then name/json pairs. Replaces the key set at once.
    public static readonly RedisLuaScript Publish = new("""
        redis.call('DEL', KEYS[1])
        for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
        redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
        return redis.call('INCR', KEYS[3])
        """);

    public static byte[] Encode(ApiKey key)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("app"u8, key.AppId);
            writer.WriteString("id"u8, key.KeyId);
            writer.WriteString("secret"u8, key.Secret);
            writer.WriteStartArray("capabilities"u8);
            foreach (var (glob, operations) in key.Capabilities.Entries)
            {
                writer.WriteStartObject();
                writer.WriteString("channel"u8, glob);
                writer.WriteStartArray("operations"u8);
                foreach (var (operation, name) in OperationNames)
                {
                    if ((operations & operation) != 0)
                    {
                        writer.WriteStringValue(name);
                    }
                }

                writer.WriteEndArray();
                writer.WriteEndObject();
            }

            writer.WriteEndArray();
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    public static ApiKey Decode(ReadOnlySpan<byte> json)
    {
        using var document = JsonDocument.Parse(json.ToArray());
        var root = document.RootElement;
        var options = new RelayKeyOptions { Id = root.GetProperty("id").GetString()!, Secret = root.GetProperty("secret").GetString()! };
        foreach (var capability in root.GetProperty("capabilities").EnumerateArray())
        {
            var entry = new RelayCapabilityOptions { Channel = capability.GetProperty("channel").GetString()! };
            foreach (var operation in capability.GetProperty("operations").EnumerateArray())
            {
                entry.Operations.Add(operation.GetString()!);
            }

            options.Capabilities.Add(entry);
        }

        return new ApiKey(root.GetProperty("app").GetString()!, options.Id, options.Secret, KeyStore.ToCapabilities(options));
    }
}

/// <summary>
/// In the auth service with <c>Relay:Bus=redis</c>: publishes the configured apps and keys and the signing public key at
/// start, within a second of a change (a configuration reload), and again every 30 s (so a Redis that lost its data is
/// filled again).
/// </summary>
internal sealed partial class RedisKeyPublisher(
    IOptions<RelayAuthOptions> auth,
    RedisConnector redis,
    IServiceProvider services,
    KeyStore keys,
    SigningKey signingKey,
    TimeProvider time,
    ILogger<RedisKeyPublisher> logger) : BackgroundService
{
    /// <summary>How often the same keys are published again: a Redis restarted empty is refilled within this.</summary>
    private static readonly TimeSpan Republish = TimeSpan.FromSeconds(30);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!RedisBusServiceCollectionExtensions.UsesRedis(services) || auth.Value.KeySource == "redis")
        {
            return;
        }

        var connection = (await redis.ConnectAsync().WaitAsync(stoppingToken).ConfigureAwait(false)).GetDatabase();
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), time);
        long attempted = -1;
        var attemptedAt = 0L;
        do
        {
            var version = keys.Version;
            if (version == attempted && time.GetElapsedTime(attemptedAt) < Republish)
            {
                continue;
            }

            var args = new List<RedisValue> { signingKey.KeyId, Convert.ToBase64String(signingKey.PublicKeyDer) };
            foreach (var key in keys.All)
            {
                args.Add(key.Name);
                args.Add(RedisKeyDirectory.Encode(key));
            }

            try
            {
                var redisVersion = await RedisKeyDirectory.Publish.EvaluateAsync(
                    connection,
                    [RedisKeyDirectory.KeysKey, RedisKeyDirectory.SignersKey, RedisKeyDirectory.VersionKey],
                    [.. args]).ConfigureAwait(false);
                LogPublished(logger, keys.KeyCount, signingKey.KeyId, (long)redisVersion);
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                LogPublishFailed(logger, e.Message);
            }

            // Published or not, the next try is after the republish interval, or as soon as the keys change.
            attempted = version;
            attemptedAt = time.GetTimestamp();
        }
        while (await WaitAsync(timer, stoppingToken).ConfigureAwait(false));
    }

    private static async Task<bool> WaitAsync(PeriodicTimer timer, CancellationToken stoppingToken)
    {
        try
        {
            return await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    [LoggerMessage(EventId = 3100, Level = LogLevel.Debug, Message = "Published {Keys} keys and signing key {Kid} to Redis (version {Version})")]
    private static partial void LogPublished(ILogger logger, int keys, string kid, long version);

    [LoggerMessage(EventId = 3101, Level = LogLevel.Warning, Message = "Could not publish keys to Redis: {Reason}; retrying in 30 s, or when the keys change")]
    private static partial void LogPublishFailed(ILogger logger, string reason);
}

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
                    var version = await connection.StringGetAsync(RedisKeyDirectory.VersionKey).ConfigureAwait(false);
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
        var published = await connection.HashGetAllAsync(RedisKeyDirectory.KeysKey).ConfigureAwait(false);
        var signers = await connection.HashGetAllAsync(RedisKeyDirectory.SignersKey).ConfigureAwait(false);
        var loaded = published.Select(static entry => RedisKeyDirectory.Decode(((ReadOnlyMemory<byte>)entry.Value).Span)).ToList();
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

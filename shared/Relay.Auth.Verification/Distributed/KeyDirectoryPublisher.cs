using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Auth.Verification.Keys;
using Relay.Bus.Keys;

namespace Relay.Auth.Verification.Distributed;

/// <summary>
/// In the auth service: publishes the configured apps and keys and the signing public key to every key directory the bus
/// registered (the Redis bus's; none in memory, where nothing needs them) at start, within a second of a change (a
/// configuration reload), and again every 30 s (so a Redis that lost its data is filled again).
/// </summary>
internal sealed partial class KeyDirectoryPublisher(
    IOptions<RelayAuthOptions> auth,
    IEnumerable<IKeyDirectory> directories,
    KeyStore keys,
    VerificationKey signingKey,
    TimeProvider time,
    ILogger<KeyDirectoryPublisher> logger) : BackgroundService
{
    /// <summary>How often the same keys are published again: a Redis restarted empty is refilled within this.</summary>
    private static readonly TimeSpan Republish = TimeSpan.FromSeconds(30);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // A node that follows another auth service's keys has none of its own to share.
        var targets = directories.ToArray();
        if (targets.Length == 0 || auth.Value.KeySource == "redis")
        {
            return;
        }

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

            var entries = new List<KeyValuePair<string, byte[]>>();
            foreach (var key in keys.All)
            {
                entries.Add(new(key.Name, KeyDirectoryJson.Encode(key)));
            }

            foreach (var directory in targets)
            {
                try
                {
                    var directoryVersion = await directory.PublishAsync(signingKey.KeyId, Convert.ToBase64String(signingKey.PublicKeyDer), entries, stoppingToken).ConfigureAwait(false);
                    LogPublished(logger, keys.KeyCount, signingKey.KeyId, directoryVersion);
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    // The store could not be reached (a Redis timeout or a lost connection): the next tick tries again.
                    LogPublishFailed(logger, e.Message);
                }
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

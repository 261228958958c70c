using System.Net;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

// Sentinel: the bus's subscriptions follow the master. StackExchange.Redis moves a subscription only when its
// connection fails, and then subscribes it again on the server that connection comes back to, master or not. A
// failover leaves subscriptions on the old master when it is demoted in place (SENTINEL FAILOVER: the sentinels close
// its clients, which reconnect to it), or when it restarts (after being killed) and the client reconnects to it before
// the sentinels make it a replica. There they stay: the master's PUBLISH counts no listener for them, which the request
// path reads as "nobody owns the shard" and waits on until it times out ("routing shard N did not answer") for as long
// as the process runs; and deliveries published while the old master is not yet replicating are lost to it. So, under
// Sentinel, the bus asks every second each server its channels are subscribed on for its role (ROLE), and subscribes
// the channels on a replica again (unsubscribe, subscribe: the client picks the master), then tells its loops
// the subscriptions are back, as after a reconnect (fan-out reloads interest, nodes resync, held requests go on).
public sealed partial class RedisBus
{
    /// <summary>
    /// How often, under Sentinel, the bus checks that its subscriptions are on the master: one <c>ROLE</c> a second per
    /// server subscribed on (normally one), and a subscription left on a replica moves within about a second.
    /// </summary>
    public static readonly TimeSpan SubscriptionCheckPeriod = TimeSpan.FromSeconds(1);

    private async Task KeepSubscriptionsOnMasterAsync()
    {
        try
        {
            while (!_stopping.IsCancellationRequested)
            {
                await Task.Delay(SubscriptionCheckPeriod, _stopping.Token).ConfigureAwait(false);
                try
                {
                    await MoveSubscriptionsToMasterAsync().ConfigureAwait(false);
                }
                catch (Exception e) when (e is RedisException or TimeoutException)
                {
                    // A server between roles or away: the next check sees it again.
                    LogSubscriptionCheckFailed(_logger, e.Message);
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
        {
            // Stopping.
        }
    }

    private async Task MoveSubscriptionsToMasterAsync()
    {
        var byServer = new Dictionary<EndPoint, List<RedisChannel>>();
        foreach (var channel in _handlers.Keys)
        {
            // None: the client is subscribing it again (after a lost connection) and picks the master itself; or a
            // move below failed half-way and the channel is subscribed again now.
            var endpoint = _subscriptions.ContainsKey(channel) ? Subscriber.SubscribedEndpoint(channel) : null;
            if (endpoint is null && _subscriptions.ContainsKey(channel))
            {
                continue;
            }

            endpoint ??= s_unsubscribed;
            if (!byServer.TryGetValue(endpoint, out var channels))
            {
                byServer[endpoint] = channels = [];
            }

            channels.Add(channel);
        }

        foreach (var (endpoint, channels) in byServer)
        {
            // The servers themselves say what they are: the client's own view of which server is the master can lag
            // a failover, and can even name the old master for a moment when it comes back empty. A channel moves
            // only off a server that is a replica now, and only once the server the client sends master commands to
            // is a master (right after the master died, the replica is all there is: nowhere better to go).
            if (!ReferenceEquals(endpoint, s_unsubscribed))
            {
                var role = await _multiplexer!.GetServer(endpoint).RoleAsync().ConfigureAwait(false);
                if (role is Role.Master)
                {
                    continue;
                }

                var master = await Database.IdentifyEndpointAsync(flags: CommandFlags.DemandMaster).ConfigureAwait(false);
                if (master is null || Equals(master, endpoint) || await _multiplexer.GetServer(master).RoleAsync().ConfigureAwait(false) is not Role.Master)
                {
                    continue;
                }

                // And only onto the master the sentinels name: a killed master restarted empty answers ROLE as a master
                // until the sentinels make it a replica, and the client may take it for the master meanwhile (the
                // earlier rule moved every channel onto it, 2 runs of 5 of the kill test).
                var named = await SentinelMasterAsync().ConfigureAwait(false);
                if (!SameEndpoint(master, named))
                {
                    LogNotTheSentinelsMaster(_logger, master.ToString() ?? "?", named?.ToString() ?? "none");
                    continue;
                }

                LogSubscriptionsOnReplica(_logger, channels.Count, endpoint.ToString() ?? "?", role.Value);
            }

            OnSubscriptionLost();
            try
            {
                await _subscribing.WaitAsync(_stopping.Token).ConfigureAwait(false);
                try
                {
                    foreach (var channel in channels)
                    {
                        await MoveToMasterAsync(channel, endpoint).ConfigureAwait(false);
                    }
                }
                finally
                {
                    _subscribing.Release();
                }
            }
            finally
            {
                // Deliveries may have been lost while they were away: fan-out reloads interest, nodes resync, and
                // requests, held meanwhile, go on.
                OnSubscriptionBack();
            }
        }
    }

    // Under the subscribing gate. Still ours (not given up meanwhile) and still where it was seen: unsubscribe it there
    // (the client forgets the channel) and subscribe it again, which goes to the master. A subscribe that fails leaves
    // the channel with its handler and no queue, and the next check subscribes it.
    private async Task MoveToMasterAsync(RedisChannel channel, EndPoint from)
    {
        if (!_handlers.TryGetValue(channel, out var handler))
        {
            return;
        }

        if (_subscriptions.TryGetValue(channel, out var queue))
        {
            if (!Equals(Subscriber.SubscribedEndpoint(channel), from))
            {
                return;
            }

            _subscriptions.TryRemove(channel, out _);
            await IgnoreFailure(queue.UnsubscribeAsync()).ConfigureAwait(false);
        }

        await SubscribeNowAsync(channel, handler).ConfigureAwait(false);
    }

    // The master the sentinels name for the service (the first sentinel that answers), through a connection to the
    // sentinels of the bus's own (made on first use, kept): the client's sentinel connection is not reachable from here.
    private async Task<EndPoint?> SentinelMasterAsync()
    {
        var options = _options.ToConfigurationOptions();
        var serviceName = options.ServiceName!;
        if (_sentinels is null)
        {
            options.AbortOnConnectFail = false;
            _sentinels = await ConnectionMultiplexer.SentinelConnectAsync(options).ConfigureAwait(false);
        }

        foreach (var endpoint in _sentinels.GetEndPoints())
        {
            try
            {
                if (await _sentinels.GetServer(endpoint).SentinelGetMasterAddressByNameAsync(serviceName).ConfigureAwait(false) is { } named)
                {
                    return named;
                }
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                // Ask the next sentinel.
            }
        }

        return null;
    }

    private static bool SameEndpoint(EndPoint a, EndPoint? b) => b is not null && string.Equals(HostAndPort(a), HostAndPort(b), StringComparison.OrdinalIgnoreCase);

    private static string HostAndPort(EndPoint endpoint) => endpoint switch
    {
        IPEndPoint ip => $"{ip.Address}:{ip.Port}",
        DnsEndPoint dns => $"{dns.Host}:{dns.Port}",
        _ => endpoint.ToString() ?? "",
    };

    // Stands for "no queue" among the servers above.
    private static readonly EndPoint s_unsubscribed = new DnsEndPoint("unsubscribed", 0);

    [LoggerMessage(EventId = 2040, Level = LogLevel.Warning, Message = "{Channels} bus subscriptions are on {EndPoint}, which is a {Role} now (a Sentinel failover): subscribing them again on the master")]
    private static partial void LogSubscriptionsOnReplica(ILogger logger, int channels, string endPoint, string role);

    [LoggerMessage(EventId = 2043, Level = LogLevel.Information, Message = "The client sends master commands to {EndPoint}, but the sentinels name {Named}: the bus's subscriptions stay where they are until both agree")]
    private static partial void LogNotTheSentinelsMaster(ILogger logger, string endPoint, string named);

    [LoggerMessage(EventId = 2041, Level = LogLevel.Debug, Message = "Could not check where the bus's subscriptions are: {Reason}")]
    private static partial void LogSubscriptionCheckFailed(ILogger logger, string reason);
}

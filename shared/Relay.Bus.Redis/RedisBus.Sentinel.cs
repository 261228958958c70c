using System.Net;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

// Sentinel: the bus's subscriptions follow the master. StackExchange.Redis moves a subscription only when its
// connection fails, and then subscribes it again on whichever server that connection comes back to, master or not: a
// master demoted in place (SENTINEL FAILOVER closes its clients, which reconnect to it) or restarted after a kill kept
// the bus's channels, where the master's PUBLISH counts no listener (requests wait until "routing shard N did not
// answer") and deliveries are lost. Moving channels one by one within the one multiplexer still left some on both
// servers about one run in four (the client names the new master while a connection to the old one carries them).
// So under Sentinel the bus subscribes through a multiplexer of its own pinned to one server, the master the
// sentinels name, and never lets it follow anywhere else: every second it asks the sentinels which server is the
// master, and when that is another one (answering ROLE as a master), it closes the pinned multiplexer (the old
// server drops every subscription of it with the connection), subscribes every channel again through a new one pinned
// to the new master, then acts as after a reconnect (held requests go on, fan-out reloads interest, nodes resync).
// Closing before subscribing again trades a moment's loss, which the bus repairs, for never hearing a message twice.
public sealed partial class RedisBus
{
    /// <summary>
    /// How often, under Sentinel, the bus asks the sentinels which server is the master, so its subscriptions move
    /// within about a second of a failover.
    /// </summary>
    public static readonly TimeSpan SubscriptionCheckPeriod = TimeSpan.FromSeconds(1);

    // Under Sentinel: the multiplexer every subscription goes through, pinned to one server (null otherwise: the
    // connector's multiplexer serves them), and that server.
    private IConnectionMultiplexer? _pinned;
    private EndPoint? _pinnedTo;

    private bool UsesSentinel => !string.IsNullOrEmpty(_options.ToConfigurationOptions().ServiceName);

    // Before the first subscription: pins subscriptions to the master the sentinels name (the one the client found,
    // if no sentinel answers now).
    private async Task PinSubscriptionsAsync()
    {
        var master = await SentinelMasterAsync().ConfigureAwait(false)
            ?? await Database.IdentifyEndpointAsync(flags: CommandFlags.DemandMaster).ConfigureAwait(false)
            ?? throw new InvalidOperationException($"no sentinel names a master for '{_options.ToConfigurationOptions().ServiceName}' (Relay:Redis:Configuration): check the service name and that the sentinels run");
        _pinned = await ConnectPinnedAsync(master).ConfigureAwait(false);
        _pinnedTo = master;
        _pinned.ConnectionFailed += OnConnectionFailed;
        _pinned.ConnectionRestored += OnConnectionRestored;
        _ = KeepSubscriptionsOnMasterAsync();
    }

    // A multiplexer to that one server only: the bus's Sentinel settings (password, TLS, timeouts) without the service
    // name, so it is a plain connection that reconnects to the same server and nowhere else.
    private async Task<IConnectionMultiplexer> ConnectPinnedAsync(EndPoint server)
    {
        var options = _options.ToConfigurationOptions();
        options.ServiceName = null;
        options.EndPoints.Clear();
        options.EndPoints.Add(server);
        options.AbortOnConnectFail = false;
        options.ClientName = (options.ClientName ?? "relay") + "-subscriber";
        return await ConnectionMultiplexer.ConnectAsync(options).ConfigureAwait(false);
    }

    private async Task KeepSubscriptionsOnMasterAsync()
    {
        try
        {
            while (!_stopping.IsCancellationRequested)
            {
                await Task.Delay(SubscriptionCheckPeriod, _stopping.Token).ConfigureAwait(false);
                try
                {
                    await FollowTheMasterAsync().ConfigureAwait(false);
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

    private async Task FollowTheMasterAsync()
    {
        var named = await SentinelMasterAsync().ConfigureAwait(false);
        if (named is null || SameEndpoint(named, _pinnedTo))
        {
            return;
        }

        // The sentinels name it before it has taken the role; and a server that does not answer as a master now would
        // only be left again at the next check.
        var next = await ConnectPinnedAsync(named).ConfigureAwait(false);
        try
        {
            var role = await next.GetServer(named).RoleAsync().ConfigureAwait(false);
            if (role is not Role.Master)
            {
                LogNotAMasterYet(_logger, named.ToString() ?? "?", role?.Value ?? "no answer");
                await next.DisposeAsync().ConfigureAwait(false);
                return;
            }
        }
        catch
        {
            await next.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        LogSubscriptionsMove(_logger, _handlers.Count, _pinnedTo?.ToString() ?? "?", named.ToString() ?? "?");
        OnSubscriptionLost();
        try
        {
            await _subscribing.WaitAsync(_stopping.Token).ConfigureAwait(false);
            try
            {
                var previous = _pinned!;
                previous.ConnectionFailed -= OnConnectionFailed;
                previous.ConnectionRestored -= OnConnectionRestored;
                _subscriptions.Clear();
                await previous.CloseAsync(allowCommandsToComplete: false).ConfigureAwait(false);
                previous.Dispose();

                _pinned = next;
                _pinnedTo = named;
                next.ConnectionFailed += OnConnectionFailed;
                next.ConnectionRestored += OnConnectionRestored;
                foreach (var (channel, handler) in _handlers)
                {
                    // One that fails now is made again by the client when its connection comes back (it keeps it), or
                    // at the next move.
                    try
                    {
                        await SubscribeNowAsync(channel, handler).ConfigureAwait(false);
                    }
                    catch (Exception e) when (e is RedisException or TimeoutException)
                    {
                        LogSubscribeLater(_logger, channel.ToString(), e.Message);
                    }
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
            // requests, held meanwhile, go on (once the reply channel hears again).
            _ = OnSubscriptionRestoredAsync();
        }
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

    private async ValueTask UnpinAsync()
    {
        if (_pinned is { } pinned)
        {
            pinned.ConnectionFailed -= OnConnectionFailed;
            pinned.ConnectionRestored -= OnConnectionRestored;
            await pinned.DisposeAsync().ConfigureAwait(false);
        }
    }

    private static bool SameEndpoint(EndPoint a, EndPoint? b) => b is not null && string.Equals(HostAndPort(a), HostAndPort(b), StringComparison.OrdinalIgnoreCase);

    private static string HostAndPort(EndPoint endpoint) => endpoint switch
    {
        IPEndPoint ip => $"{ip.Address}:{ip.Port}",
        DnsEndPoint dns => $"{dns.Host}:{dns.Port}",
        _ => endpoint.ToString() ?? "",
    };

    [LoggerMessage(EventId = 2040, Level = LogLevel.Warning, Message = "The sentinels name {To} the master now: moving the bus's {Channels} subscriptions there from {From} (a Sentinel failover)")]
    private static partial void LogSubscriptionsMove(ILogger logger, int channels, string from, string to);

    [LoggerMessage(EventId = 2041, Level = LogLevel.Debug, Message = "Could not check where the bus's subscriptions are: {Reason}")]
    private static partial void LogSubscriptionCheckFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 2043, Level = LogLevel.Information, Message = "The sentinels name {Named} the master, but it answers ROLE as {Role}: the bus's subscriptions stay where they are until it is one")]
    private static partial void LogNotAMasterYet(ILogger logger, string named, string role);
}

using System.Net;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Auth.Verification;
using Relay.Bus.FanOut;
using Relay.Core.Messages;

namespace Relay.Pusher;

/// <summary>
/// The apps' Pusher webhooks (<c>Relay:Pusher:Apps:{appId}:Webhooks</c>). Each event is told once, by the process
/// that knows it for the whole cluster:
/// <list type="bullet">
/// <item><c>channel_occupied</c> / <c>channel_vacated</c>: fan-out's interest (<see cref="IInterestTap"/>): the first
/// node to report subscribers of a channel, the last one to report none or to go away;</item>
/// <item><c>member_added</c> / <c>member_removed</c>: the presence events routing sequences for a user's first and last
/// connection on a <c>presence-</c> channel, as fan-out sees them (<see cref="ISequencedTap"/>);</item>
/// <item><c>client_event</c> and <c>cache_miss</c>: the node where the client event was published or the cache channel
/// subscribed.</item>
/// </list>
/// With no webhook configured every call returns at once.
/// </summary>
internal sealed class PusherWebhooks : BackgroundService, ISequencedTap, IInterestTap
{
    private readonly Dictionary<string, PusherWebhookReceiver[]> _apps = new(StringComparer.Ordinal);
    private readonly HttpClient? _http;
    private readonly ChannelOccupancy _occupancy;
    private readonly bool _members;
    private readonly bool _occupied;

    public PusherWebhooks(IOptions<PusherOptions> options, IRelayKeys keys, TimeProvider time, ILogger<PusherWebhooks> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        var settings = options.Value;
        foreach (var (app, appSettings) in settings.Apps)
        {
            if (appSettings.Webhooks.Count == 0)
            {
                continue;
            }

            _http ??= new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5), AutomaticDecompression = DecompressionMethods.None }) { Timeout = Timeout.InfiniteTimeSpan };
            _apps[app] = [.. appSettings.Webhooks.Select(webhook => new PusherWebhookReceiver(app, appSettings.WebhookKey!, webhook, settings, keys, _http, time, logger))];
        }

        _members = _apps.Values.Any(static r => r.Any(static x => x.Wants(PusherWebhookEvents.MemberAdded) || x.Wants(PusherWebhookEvents.MemberRemoved)));
        _occupied = _apps.Values.Any(static r => r.Any(static x => x.Wants(PusherWebhookEvents.ChannelOccupied) || x.Wants(PusherWebhookEvents.ChannelVacated)));
        // Users' own channels (server-to-user-…) are no Pusher channels.
        _occupancy = new ChannelOccupancy(
            (app, channel) => !channel.StartsWith(PusherChannels.RelayUserPrefix, StringComparison.Ordinal)
                && _apps.TryGetValue(app, out var receivers) && Array.Exists(receivers, static x => x.Wants(PusherWebhookEvents.ChannelOccupied) || x.Wants(PusherWebhookEvents.ChannelVacated)),
            (app, channel, occupied) => Post(app, new PusherWebhookEvent(occupied ? PusherWebhookEvents.ChannelOccupied : PusherWebhookEvents.ChannelVacated, PusherChannels.ToPusher(channel))));
    }

    /// <summary>Whether some receiver of <paramref name="app"/> wants <paramref name="name"/> events (so the caller builds one).</summary>
    public bool Wants(string app, string name)
    {
        if (_apps.Count == 0 || !_apps.TryGetValue(app, out var receivers))
        {
            return false;
        }

        foreach (var receiver in receivers)
        {
            if (receiver.Wants(name))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Queues <paramref name="webhookEvent"/> for every receiver of <paramref name="app"/> that wants it.</summary>
    public void Post(string app, PusherWebhookEvent webhookEvent)
    {
        if (_apps.TryGetValue(app, out var receivers))
        {
            foreach (var receiver in receivers)
            {
                receiver.Post(webhookEvent);
            }
        }
    }

    /// <inheritdoc />
    public void OnSequenced(RelayMessage message)
    {
        // Routing sequences enter for a client's first connection and leave for its last: Pusher's member_added and
        // member_removed, on presence channels.
        if (!_members || message.PresenceAction is not { } action || message.ClientId is not { } user
            || !message.Channel.StartsWith(PusherChannels.PresencePrefix, StringComparison.Ordinal))
        {
            return;
        }

        var name = action switch
        {
            "enter" => PusherWebhookEvents.MemberAdded,
            "leave" => PusherWebhookEvents.MemberRemoved,
            _ => null,
        };
        if (name is not null && Wants(message.App, name))
        {
            Post(message.App, new PusherWebhookEvent(name, message.Channel, UserId: user));
        }
    }

    /// <inheritdoc />
    public void OnInterest(InterestChange change)
    {
        if (_occupied)
        {
            _occupancy.Apply(change);
        }
    }

    /// <inheritdoc />
    public void OnNodeGone(string nodeId)
    {
        if (_occupied)
        {
            _occupancy.RemoveNode(nodeId);
        }
    }

    /// <inheritdoc />
    public void OnChannelsLeft(Func<string, string, bool> leaving)
    {
        if (_occupied)
        {
            _occupancy.Forget(leaving);
        }
    }

    /// <inheritdoc />
    public override void Dispose()
    {
        _http?.Dispose();
        base.Dispose();
    }

    /// <inheritdoc />
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(_apps.Values.SelectMany(static r => r).Select(r => r.RunAsync(stoppingToken)));
}

namespace Relay.Pusher;

/// <summary>The names of Pusher's webhook events, as its receivers read them in <c>events[].name</c>.</summary>
public static class PusherWebhookEvents
{
    /// <summary>A channel's first subscriber on any node.</summary>
    public const string ChannelOccupied = "channel_occupied";

    /// <summary>A channel's last subscriber on any node left.</summary>
    public const string ChannelVacated = "channel_vacated";

    /// <summary>A user's first connection entered a presence channel.</summary>
    public const string MemberAdded = "member_added";

    /// <summary>A user's last connection left a presence channel.</summary>
    public const string MemberRemoved = "member_removed";

    /// <summary>A client event was published.</summary>
    public const string ClientEvent = "client_event";

    /// <summary>A subscriber of a cache channel found nothing cached.</summary>
    public const string CacheMiss = "cache_miss";

    /// <summary>Every event, in the order Pusher's dashboard lists them.</summary>
    public static readonly string[] All = [ChannelOccupied, ChannelVacated, MemberAdded, MemberRemoved, ClientEvent, CacheMiss];
}

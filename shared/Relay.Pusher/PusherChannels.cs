namespace Relay.Pusher;

/// <summary>
/// Pusher channel names and Relay channel names are the same names (docs/pusher.md): <c>private-chat</c> on pusher-js is
/// <c>private-chat</c> on Relay's WebSocket, SSE and MQTT. Pusher's names have no <c>:</c>, so they live in Relay's
/// default namespace; Relay names with namespaces (<c>chat:lobby</c>) are accepted too. The one exception is a user's
/// channel <c>#server-to-user-{id}</c>: Relay forbids <c>#</c> in names, so it is <c>server-to-user-{id}</c> there.
/// </summary>
internal static class PusherChannels
{
    public const string PrivatePrefix = "private-";
    public const string EncryptedPrefix = "private-encrypted-";
    public const string PresencePrefix = "presence-";
    public const string UserPrefix = "#server-to-user-";

    /// <summary>A user channel's Relay name starts with this.</summary>
    public const string RelayUserPrefix = "server-to-user-";

    /// <summary>Pusher's longest channel name.</summary>
    public const int MaxNameLength = 164;

    public static PusherChannelKind KindOf(string pusherName) =>
        pusherName.StartsWith(EncryptedPrefix, StringComparison.Ordinal) ? PusherChannelKind.Encrypted
        : pusherName.StartsWith(PrivatePrefix, StringComparison.Ordinal) ? PusherChannelKind.Private
        : pusherName.StartsWith(PresencePrefix, StringComparison.Ordinal) ? PusherChannelKind.Presence
        : pusherName.StartsWith(UserPrefix, StringComparison.Ordinal) ? PusherChannelKind.User
        : PusherChannelKind.Public;

    /// <summary>Whether a channel keeps its last event for new subscribers (<c>cache-</c>, <c>private-cache-</c>, <c>presence-cache-</c>, <c>private-encrypted-cache-</c>).</summary>
    public static bool IsCache(string pusherName) =>
        pusherName.StartsWith("cache-", StringComparison.Ordinal)
        || pusherName.StartsWith("private-cache-", StringComparison.Ordinal)
        || pusherName.StartsWith("presence-cache-", StringComparison.Ordinal)
        || pusherName.StartsWith("private-encrypted-cache-", StringComparison.Ordinal);

    /// <summary>The Relay channel of a Pusher channel; null (with the reason) when the name is not one Relay can carry.</summary>
    public static string? ToRelay(string pusherName, out string error)
    {
        if (pusherName.Length is 0 or > MaxNameLength)
        {
            error = $"channel names are 1-{MaxNameLength} characters";
            return null;
        }

        var relay = pusherName.StartsWith(UserPrefix, StringComparison.Ordinal) ? pusherName[1..] : pusherName;
        if (!Relay.Core.Channels.ChannelName.IsValidName(relay, out error))
        {
            return null;
        }

        // A public name that would be read back as a user's channel is kept for users.
        if (relay.StartsWith(RelayUserPrefix, StringComparison.Ordinal) && ReferenceEquals(relay, pusherName))
        {
            error = $"'{RelayUserPrefix}' names are the Relay side of '{UserPrefix}' channels";
            return null;
        }

        return relay;
    }

    /// <summary>The Pusher name of a Relay channel.</summary>
    public static string ToPusher(string relayName) =>
        relayName.StartsWith(RelayUserPrefix, StringComparison.Ordinal) ? "#" + relayName : relayName;
}

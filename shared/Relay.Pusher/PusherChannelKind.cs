namespace Relay.Pusher;

/// <summary>What a Pusher channel name's prefix makes of it.</summary>
internal enum PusherChannelKind
{
    /// <summary>Anyone with the app key may subscribe.</summary>
    Public,

    /// <summary><c>private-</c>: subscribing takes a signature from the app's server.</summary>
    Private,

    /// <summary><c>private-encrypted-</c>: private, and the payload is end-to-end encrypted (relayed untouched).</summary>
    Encrypted,

    /// <summary><c>presence-</c>: private, with members.</summary>
    Presence,

    /// <summary><c>#server-to-user-{id}</c>: the events of one signed-in user.</summary>
    User,
}

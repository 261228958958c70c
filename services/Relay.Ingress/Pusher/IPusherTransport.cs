namespace Relay.Ingress.Pusher;

/// <summary>
/// What carries a Pusher client's frames to its <see cref="PusherConnection"/>: a WebSocket
/// (<see cref="PusherWebSocketTransport"/>) or an HTTP fallback session (<see cref="PusherHttpSession"/>). Frames going
/// out leave through the connection's <see cref="Sending.IFrameSender"/>; the protocol (socket id, subscriptions, auth,
/// presence, client events, pings, limits) is the connection's, the same whichever carries it.
/// </summary>
internal interface IPusherTransport
{
    /// <summary>Hands the client's frames to <paramref name="connection"/> one at a time, in order; completes when the client has gone.</summary>
    Task ReceiveAsync(PusherConnection connection);

    /// <summary>Ends the carrier at once (the connection's close deadline passed).</summary>
    void Abort();
}

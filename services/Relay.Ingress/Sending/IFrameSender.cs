using System.Net.WebSockets;

namespace Relay.Ingress.Sending;

/// <summary>
/// How a realtime connection's frames leave, whichever way the connection came in: whole text frames, in order, with
/// everything not yet sent counted against one budget in bytes, a last frame after which the WebSocket closes, and the
/// node's once-a-second sweep. Deliveries call it from any thread. The backends:
/// <list type="bullet">
/// <item><see cref="SocketFrameSender"/>, Relay's own transport: a frame goes straight into the socket's send buffer
/// and leaves at its flush, which <see cref="DeliveryBatch.RequestFlush"/> defers to the end of the publisher's burst
/// the delivery belongs to (the rule is on <see cref="DeliveryBatch"/>); a backlog forms only while the socket cannot
/// keep up.</item>
/// <item><see cref="FrameworkFrameSender"/>, ASP.NET Core's WebSocket (TLS, HTTP/2, Unix sockets, what Relay's
/// transport did not take): every frame is queued, and a write loop sends what waits, several frames as one array
/// frame.</item>
/// </list>
/// </summary>
internal interface IFrameSender
{
    /// <summary>
    /// Queues one text frame; its bytes must stay as they are until sent (a message's frame is shared by every
    /// subscriber). False, and nothing queued, when the connection would then hold more than its budget not yet sent
    /// (a slow consumer), or after <see cref="SendLast"/>.
    /// </summary>
    bool TrySend(ReadOnlyMemory<byte> frame);

    /// <summary>
    /// Queues the connection's last frame (a <c>disconnect</c>; none when empty) whatever the budget, after dropping the
    /// backlog when <paramref name="dropQueued"/> (a slow consumer's); every later frame is refused, and once this one is
    /// sent the WebSocket is closed with <paramref name="status"/> and <paramref name="reason"/> (Pusher's 4000-4299 codes).
    /// </summary>
    void SendLast(ReadOnlyMemory<byte> frame, bool dropQueued, WebSocketCloseStatus status = WebSocketCloseStatus.NormalClosure, string? reason = "disconnect");

    /// <summary>No more frames: completes once what is queued has been sent (and, after <see cref="SendLast"/>, the close), or the socket failed.</summary>
    Task DrainAsync();

    /// <summary>Drops whatever still waits (the connection has ended).</summary>
    void Discard();

    /// <summary>The node's once-a-second sweep: keep-alive pings where the backend sends them, and buffers given back after a quiet spell.</summary>
    void Sweep();
}

using System.IO.Pipelines;
using System.Net.WebSockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// MQTT over WebSocket at <c>/mqtt</c> (subprotocol <c>mqtt</c>, MQTT 5 §6): binary messages carry the byte stream,
/// split wherever the client likes, and the connection is served by the same <see cref="MqttConnectionHandler"/> as TCP,
/// over a duplex pipe on the WebSocket. Credentials travel in CONNECT, as on TCP.
/// </summary>
internal static class MqttWebSocketEndpoint
{
    public const string Path = "/mqtt";

    public const string SubProtocol = "mqtt";

    public static void Map(IEndpointRouteBuilder endpoints) =>
        endpoints.Map(Path, static async context =>
        {
            if (!context.WebSockets.IsWebSocketRequest)
            {
                context.Response.StatusCode = StatusCodes.Status426UpgradeRequired;
                await context.Response.WriteAsync("MQTT over WebSocket: upgrade with Sec-WebSocket-Protocol: mqtt").ConfigureAwait(false);
                return;
            }

            if (!context.WebSockets.WebSocketRequestedProtocols.Contains(SubProtocol, StringComparer.OrdinalIgnoreCase))
            {
                context.Response.StatusCode = StatusCodes.Status400BadRequest;
                await context.Response.WriteAsync("MQTT over WebSocket needs the subprotocol 'mqtt' (Sec-WebSocket-Protocol: mqtt)").ConfigureAwait(false);
                return;
            }

            using var socket = await context.WebSockets.AcceptWebSocketAsync(SubProtocol).ConfigureAwait(false);
            var stream = WebSocketStream.Create(socket, WebSocketMessageType.Binary, ownsWebSocket: false);
            await using var disposeStream = stream.ConfigureAwait(false);
            var pipe = new StreamDuplexPipe(PipeReader.Create(stream), PipeWriter.Create(stream));
            var handler = context.RequestServices.GetRequiredService<MqttConnectionHandler>();
            var connection = new DefaultConnectionContext(context.Connection.Id, pipe, pipe);
            connection.ConnectionClosed = context.RequestAborted;
            connection.RemoteEndPoint = context.Connection.RemoteIpAddress is { } remote ? new System.Net.IPEndPoint(remote, context.Connection.RemotePort) : null;
            await handler.OnConnectedAsync(new AbortableConnection(connection, socket)).ConfigureAwait(false);
            if (socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
            {
                try
                {
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is WebSocketException or TimeoutException or ObjectDisposedException or IOException)
                {
                    socket.Abort();
                }
            }
        });

    private sealed class StreamDuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    /// <summary>The WebSocket's connection, whose abort aborts the WebSocket.</summary>
    private sealed class AbortableConnection(DefaultConnectionContext inner, WebSocket socket) : ConnectionContext
    {
        public override string ConnectionId { get => inner.ConnectionId; set => inner.ConnectionId = value; }

        public override Microsoft.AspNetCore.Http.Features.IFeatureCollection Features => inner.Features;

        public override IDictionary<object, object?> Items { get => inner.Items; set => inner.Items = value; }

        public override IDuplexPipe Transport { get => inner.Transport; set => inner.Transport = value; }

        public override System.Net.EndPoint? RemoteEndPoint { get => inner.RemoteEndPoint; set => inner.RemoteEndPoint = value; }

        public override void Abort() => socket.Abort();

        public override void Abort(ConnectionAbortedException abortReason) => socket.Abort();
    }
}

using Microsoft.AspNetCore.Connections;
using Relay.Ingress.Connections;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// The one MQTT connection handler: the TCP listener (<see cref="MqttListener"/>) and the WebSocket endpoint
/// (<see cref="MqttWebSocketEndpoint"/>, over a duplex pipe) both hand it their connections. It also serves a Kestrel
/// endpoint configured with <c>UseConnectionHandler&lt;MqttConnectionHandler&gt;()</c>.
/// </summary>
internal sealed class MqttConnectionHandler(MqttBroker broker) : ConnectionHandler
{
    public override Task OnConnectedAsync(ConnectionContext connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return RunAsync(new MqttConnection(connection.Transport, connection.Abort, broker) { RefusedAtAccept = RefusalOf(connection), FromLoopback = IsLoopback(connection.RemoteEndPoint) });
    }

    /// <summary>Serves a connection given as its pipes (MQTT over TLS: the decrypted stream of <paramref name="connection"/>; <paramref name="refused"/>: <see cref="RefusalOf"/> it).</summary>
    public Task ServeAsync(System.IO.Pipelines.IDuplexPipe transport, ConnectionContext connection, MqttCertificateIdentity? certificate, string? refused) =>
        RunAsync(new MqttConnection(transport, connection.Abort, broker) { Certificate = certificate, RefusedAtAccept = refused, FromLoopback = IsLoopback(connection.RemoteEndPoint) });

    // Kestrel's transport closes both ways when the handler returns: a client sent a DISCONNECT reads it before that.
    private static async Task RunAsync(MqttConnection connection)
    {
        await connection.RunAsync().ConfigureAwait(false);
        await connection.DrainAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Serves a connection on its bare socket (Relay's own transport, <see cref="MqttListener"/>): its output is opened
    /// here, with one lock for the send buffer and the connection's send queue, flushed by one of the node's schedulers.
    /// </summary>
    /// <param name="owner">Ends the connection once its read loop has (the listener), with <paramref name="address"/>.</param>
    public void Serve(Sending.BareSocketTransport transport, System.Net.EndPoint? remote, string? refused, IBareConnectionOwner owner, System.Net.IPAddress? address)
    {
        var gate = new Lock();
        transport.OpenOutput(gate, broker.Node.NextFlusher());

        // Reads know when their bytes arrived, so a SUBSCRIBE is ordered by arrival against publishes read on other threads.
        if (((WebSockets.SocketReader)transport.Input).StampArrivals())
        {
            broker.Node.KeepRecentDispatches();
        }

        _ = new MqttConnection(transport, abort: null, broker, gate) { RefusedAtAccept = refused, FromLoopback = IsLoopback(remote), Owner = owner, GateAddress = address }.RunAsync();
    }

    /// <summary>Whether <paramref name="remote"/> is a loopback address (127.0.0.0/8 or ::1, IPv4-mapped included).</summary>
    public static bool IsLoopback(System.Net.EndPoint? remote) => remote is System.Net.IPEndPoint { Address: var address }
        && System.Net.IPAddress.IsLoopback(address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address);

    /// <summary>
    /// Why MQTT's gated listener refused <paramref name="connection"/> for its address, or null: the connection is served
    /// only to answer its CONNECT with a refusal once CONNECT says the version.
    /// </summary>
    public static string? RefusalOf(ConnectionContext connection) => connection is GatedConnection gated ? RefusalOf(gated.Refused) : null;

    /// <summary>Why the gate's <paramref name="admission"/> refused a connection (the node's cap or its address's limits), or null (admitted).</summary>
    public static string? RefusalOf(Admission admission) => admission switch
    {
        Admission.Admitted => null,
        Admission.NodeFull => $"this node is at its limit of connections (Relay:Ingress:MaxConnections): retry in {ConnectionGate.RetryAfterSeconds} s, or connect to another node",
        Admission.AddressFull => $"this address holds its limit of connections to this node (Relay:Ingress:MaxConnectionsPerIp); retry in {ConnectionGate.RetryAfterSeconds} s",
        _ => "this address opens connections too fast (Relay:Ingress:ConnectionRatePerIp); retry with backoff",
    };
}

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
        return new MqttConnection(connection.Transport, connection.Abort, broker) { RefusedAtAccept = RefusalOf(connection) }.RunAsync();
    }

    /// <summary>Serves a connection given as its pipes (MQTT over TLS: the decrypted stream; <paramref name="refused"/>: <see cref="RefusalOf"/> the TCP connection).</summary>
    public Task ServeAsync(System.IO.Pipelines.IDuplexPipe transport, Action abort, MqttCertificateIdentity? certificate, string? refused) =>
        new MqttConnection(transport, abort, broker) { Certificate = certificate, RefusedAtAccept = refused }.RunAsync();

    /// <summary>
    /// Why MQTT's gated listener refused <paramref name="connection"/> for its address, or null: the connection is served
    /// only to answer its CONNECT with a refusal once CONNECT says the version.
    /// </summary>
    public static string? RefusalOf(ConnectionContext connection) => connection is GatedConnection { Refused: not Admission.Admitted } gated
        ? gated.Refused == Admission.AddressFull
            ? $"this address holds its limit of connections to this node (Relay:Ingress:MaxConnectionsPerIp); retry in {ConnectionGate.RetryAfterSeconds} s"
            : "this address opens connections too fast (Relay:Ingress:ConnectionRatePerIp); retry with backoff"
        : null;
}

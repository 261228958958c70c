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

        // Refused at accept for its address (MqttListener's gated listener): answered with a CONNACK once CONNECT says the version.
        var refused = connection is GatedConnection { Refused: not Admission.Admitted } gated
            ? gated.Refused == Admission.AddressFull
                ? $"this address holds its limit of connections to this node (Relay:Ingress:MaxConnectionsPerIp); retry in {ConnectionGate.RetryAfterSeconds} s"
                : "this address opens connections too fast (Relay:Ingress:ConnectionRatePerIp); retry with backoff"
            : null;
        return new MqttConnection(connection.Transport, connection.Abort, broker) { RefusedAtAccept = refused }.RunAsync();
    }

    /// <summary>Serves a connection given as its pipes (MQTT over TLS: the decrypted stream).</summary>
    public Task ServeAsync(System.IO.Pipelines.IDuplexPipe transport, Action abort, MqttCertificateIdentity? certificate) =>
        new MqttConnection(transport, abort, broker) { Certificate = certificate }.RunAsync();
}

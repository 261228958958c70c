using Microsoft.AspNetCore.Connections;

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
        return new MqttConnection(connection.Transport, connection.Abort, broker).RunAsync();
    }

    /// <summary>Serves a connection given as its pipes (MQTT over TLS: the decrypted stream).</summary>
    public Task ServeAsync(System.IO.Pipelines.IDuplexPipe transport, Action abort, MqttCertificateIdentity? certificate) =>
        new MqttConnection(transport, abort, broker) { Certificate = certificate }.RunAsync();
}

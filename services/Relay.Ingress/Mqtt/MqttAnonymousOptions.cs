namespace Relay.Ingress.Mqtt;

/// <summary>
/// MQTT connections without credentials (<c>Relay:Mqtt:Anonymous</c>): a CONNECT with no user name, password or client
/// certificate connects as <see cref="Key"/>, with its MQTT client id as the Relay client id; mosquitto's
/// <c>allow_anonymous</c>, held to one key's capabilities and app. Off while <see cref="Key"/> is unset (such a
/// CONNECT is refused: 3.1.1 0x05, MQTT 5 0x87).
/// </summary>
public sealed class MqttAnonymousOptions
{
    /// <summary>The key (<c>APPID.KEYID</c>, no secret) a connection without credentials connects as; unset: refused.</summary>
    public string? Key { get; set; }

    /// <summary>
    /// Whether only connections from a loopback address (127.0.0.0/8, ::1) may connect without credentials (the default,
    /// like mosquitto 2's local-only mode); others get the refusal for missing credentials.
    /// </summary>
    public bool LoopbackOnly { get; set; } = true;

    /// <summary>Whether connections without credentials are taken at all.</summary>
    public bool Enabled => !string.IsNullOrWhiteSpace(Key);
}

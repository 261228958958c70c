namespace Relay.Ingress.Mqtt.Codec;

/// <summary>CONNECT (MQTT 3.1.1 §3.1, 5.0 §3.1).</summary>
internal sealed class MqttConnect() : MqttPacket(MqttPacketType.Connect)
{
    public string ProtocolName { get; set; } = "MQTT";

    /// <summary>4 (3.1.1) or 5; 3 (MQTT 3.1, protocol name MQIsdp) is read so it can be refused with the right code.</summary>
    public byte ProtocolLevel { get; set; } = 4;

    public bool CleanSession { get; set; } = true;

    public ushort KeepAliveSeconds { get; set; }

    public string ClientId { get; set; } = string.Empty;

    public string? UserName { get; set; }

    public byte[]? Password { get; set; }

    public bool HasWill { get; set; }

    public byte WillQos { get; set; }

    public bool WillRetain { get; set; }

    public string? WillTopic { get; set; }

    public byte[]? WillPayload { get; set; }

    public MqttProperties? WillProperties { get; set; }

    public MqttProperties? Properties { get; set; }
}

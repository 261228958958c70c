namespace Relay.Ingress.Mqtt.Codec;

/// <summary>
/// Input that breaks the MQTT rules: the only exception the codec throws. <see cref="ReasonCode"/> is the MQTT 5 reason
/// code the broker answers with (0x81 malformed, 0x82 protocol error, 0x95 packet too large, …) before it closes; an
/// MQTT 3.1.1 connection is closed without a word, as 3.1.1 prescribes.
/// </summary>
internal sealed class MqttProtocolException : Exception
{
    public MqttProtocolException(byte reasonCode, string message)
        : base(message)
    {
        ReasonCode = reasonCode;
    }

    public MqttProtocolException()
        : this(MqttReasonCodes.MalformedPacket, "malformed packet")
    {
    }

    public MqttProtocolException(string message)
        : this(MqttReasonCodes.MalformedPacket, message)
    {
    }

    public MqttProtocolException(string message, Exception innerException)
        : base(message, innerException)
    {
        ReasonCode = MqttReasonCodes.MalformedPacket;
    }

    public byte ReasonCode { get; }

    public static MqttProtocolException Malformed(string message) => new(MqttReasonCodes.MalformedPacket, message);

    public static MqttProtocolException Protocol(string message) => new(MqttReasonCodes.ProtocolError, message);
}

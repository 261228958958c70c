namespace Relay.Ingress.Mqtt.Codec;

/// <summary>One topic filter of a SUBSCRIBE with its options byte (QoS in bits 0-1; MQTT 5 adds no-local, retain-as-published and retain handling).</summary>
internal readonly record struct MqttSubscription(string Filter, byte Options)
{
    public byte Qos => (byte)(Options & 0x03);

    public bool NoLocal => (Options & 0x04) != 0;

    public bool RetainAsPublished => (Options & 0x08) != 0;

    public byte RetainHandling => (byte)((Options >> 4) & 0x03);
}

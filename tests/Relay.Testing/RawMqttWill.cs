namespace Relay.Testing;

/// <summary>A last will for <see cref="RawMqttClient.Connect"/>: topic, payload (UTF-8), QoS, retain, and MQTT 5's Will Delay Interval.</summary>
public sealed record RawMqttWill(string Topic, string Payload, byte Qos = 1, bool Retain = false, uint DelaySeconds = 0);

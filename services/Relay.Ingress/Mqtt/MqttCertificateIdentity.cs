namespace Relay.Ingress.Mqtt;

/// <summary>A valid client certificate's subject common name and the key it maps to (null: none, refused at CONNECT).</summary>
internal sealed record MqttCertificateIdentity(string CommonName, string? Key);

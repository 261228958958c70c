namespace Relay.Ingress.Mqtt;

/// <summary>
/// Client certificates on MQTT over TLS (<c>Relay:Mqtt:ClientCertificates</c>): devices that present a certificate issued
/// by one of <see cref="CaPath"/>'s authorities connect as the key their certificate's subject common name maps to in
/// <see cref="Keys"/>, with no user name or password. Off while <see cref="CaPath"/> is unset.
/// </summary>
public sealed class MqttClientCertificateOptions
{
    /// <summary>A PEM file of the certificate authorities whose client certificates are accepted (the device CA, not the server's).</summary>
    public string? CaPath { get; set; }

    /// <summary>Whether a TLS connection without a valid client certificate is refused at the handshake (else it may use a user name and password).</summary>
    public bool Required { get; set; }

    /// <summary>Subject common name (<c>CN</c>) of a client certificate → the key (<c>APPID.KEYID</c>) it connects as.</summary>
    public Dictionary<string, string> Keys { get; } = new(StringComparer.Ordinal);

    /// <summary>Whether client certificates are asked for.</summary>
    public bool Enabled => !string.IsNullOrWhiteSpace(CaPath);
}

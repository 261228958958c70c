namespace Relay.ServiceDefaults.Tls;

/// <summary>
/// Mutual TLS between Relay's own services, bound from <c>Relay:InternalTls</c>: this service's certificate, issued by
/// the internal CA, which it presents when it calls another service (the ingress's calls to the auth service) and
/// serves on its internal listener; and that CA, the only one a peer's certificate may chain to. Off while
/// <see cref="CertificatePath"/> is not set.
/// </summary>
public sealed class InternalTlsOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "Relay:InternalTls";

    /// <summary>This service's certificate: PEM (the leaf first) or PKCS#12 (<c>.pfx</c>/<c>.p12</c>), issued by <see cref="CaPath"/>'s CA.</summary>
    public string? CertificatePath { get; set; }

    /// <summary>The PEM private key of <see cref="CertificatePath"/> (in the same file when not set).</summary>
    public string? KeyPath { get; set; }

    /// <summary>The PKCS#12 file's password, or the encrypted PEM key's.</summary>
    public string? Password { get; set; }

    /// <summary>PEM certificates of the internal CA (one or more): peers' certificates must chain to one of these, and to nothing else.</summary>
    public string? CaPath { get; set; }

    /// <summary>
    /// The port of this service's internal listener (every address): TLS with this service's certificate, and a client
    /// certificate from the CA required. The internal endpoints (the auth service's tokens and JWKS) are served only
    /// there; the other listeners answer them 403. Not set: no internal listener (a service that only calls others).
    /// </summary>
    public int? Port { get; set; }

    /// <summary>Whether a certificate is configured (calls to other services present it).</summary>
    public bool Enabled => !string.IsNullOrWhiteSpace(CertificatePath);

    /// <summary>The certificate settings in the form the certificate loader reads, with messages naming this section.</summary>
    internal TlsOptions AsCertificate() => new() { CertificatePath = CertificatePath, KeyPath = KeyPath, Password = Password, Section = SectionName };
}

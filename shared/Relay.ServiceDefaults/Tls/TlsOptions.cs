using System.Security.Cryptography.X509Certificates;

namespace Relay.ServiceDefaults.Tls;

/// <summary>
/// TLS terminated in the process, bound from <c>Relay:Tls</c>: the server certificate (PEM or PFX files, or the platform
/// store) and the listeners that serve it. Off while neither <see cref="CertificatePath"/> nor <see cref="Subject"/> is set.
/// </summary>
public sealed class TlsOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "Relay:Tls";

    /// <summary>
    /// How often the certificate files' timestamps (or the store) are looked at for a renewed certificate. Short enough
    /// that a renewal is served within seconds; a look is two file stats, so it costs nothing worth counting.
    /// </summary>
    public static readonly TimeSpan DefaultReloadInterval = TimeSpan.FromSeconds(10);

    /// <summary>
    /// A PEM certificate (the leaf first, then any intermediates to send with it) or a PKCS#12 (<c>.pfx</c>/<c>.p12</c>)
    /// file. Its key is in <see cref="KeyPath"/>, or in the same file when that is not set.
    /// </summary>
    public string? CertificatePath { get; set; }

    /// <summary>The PEM private key of <see cref="CertificatePath"/> (PKCS#8, PKCS#1 or SEC1; encrypted with <see cref="Password"/>).</summary>
    public string? KeyPath { get; set; }

    /// <summary>The PKCS#12 file's password, or the encrypted PEM key's.</summary>
    public string? Password { get; set; }

    /// <summary>
    /// The subject of a certificate in the platform store (<c>CN=relay.example.com</c>, or the name alone), instead of
    /// files: the newest currently valid one with a private key is served.
    /// </summary>
    public string? Subject { get; set; }

    /// <summary>The store <see cref="Subject"/> is looked up in.</summary>
    public StoreName StoreName { get; set; } = StoreName.My;

    /// <summary>The store location <see cref="Subject"/> is looked up in.</summary>
    public StoreLocation StoreLocation { get; set; } = StoreLocation.CurrentUser;

    /// <summary>
    /// The TCP ports that serve TLS. Empty: every TCP listener does. Ports named by an <c>https://</c> URL
    /// (<c>urls</c>, <c>ASPNETCORE_HTTPS_PORTS</c>, <c>Kestrel:Endpoints:*:Url</c>) serve it too.
    /// </summary>
    public IList<int> Ports { get; } = [];

    /// <summary>See <see cref="DefaultReloadInterval"/>.</summary>
    public TimeSpan ReloadInterval { get; set; } = DefaultReloadInterval;

    /// <summary>The section messages name (<c>Relay:InternalTls</c> when the internal certificate is loaded through this).</summary>
    internal string Section { get; init; } = SectionName;

    /// <summary>Whether a certificate is configured (TLS is on).</summary>
    public bool Enabled => !string.IsNullOrWhiteSpace(CertificatePath) || !string.IsNullOrWhiteSpace(Subject);
}

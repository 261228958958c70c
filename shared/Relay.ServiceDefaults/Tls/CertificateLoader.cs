using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Relay.ServiceDefaults.Tls;

/// <summary>
/// Reads the server certificate <see cref="TlsOptions"/> names, from files (<see cref="CertificateFiles"/>) or the platform
/// store, into what a TLS handshake needs; every failure is an <see cref="InvalidOperationException"/> whose message says
/// what to fix.
/// </summary>
internal static class CertificateLoader
{
    /// <summary>A loaded certificate: the leaf (with its key) and the context handshakes are served from.</summary>
    internal sealed record Loaded(X509Certificate2 Certificate, SslStreamCertificateContext Context);

    public static Loaded Load(TlsOptions options, TimeProvider time)
    {
        try
        {
            return !string.IsNullOrWhiteSpace(options.CertificatePath) ? LoadFiles(options) : LoadFromStore(options, time);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"{options.Section} could not read the certificate or key file ({ex.Message}): the process's user must be able to read both.", ex);
        }
    }

    /// <summary>The files whose timestamps tell a renewal (none for the store).</summary>
    public static string[] Files(TlsOptions options) => string.IsNullOrWhiteSpace(options.CertificatePath)
        ? []
        : string.IsNullOrWhiteSpace(options.KeyPath) ? [options.CertificatePath] : [options.CertificatePath, options.KeyPath];

    private static Loaded LoadFiles(TlsOptions options)
    {
        var settings = new CertificateSettings(options.Section + ":CertificatePath", options.Section + ":KeyPath", options.Section + ":Password", EncryptedPem: true);
        var loaded = CertificateFiles.LoadWithKey(options.CertificatePath!, string.IsNullOrWhiteSpace(options.KeyPath) ? null : options.KeyPath, options.Password, settings);
        var leaf = loaded[0];
        loaded.RemoveAt(0);
        return Build(leaf, loaded);
    }

    private static Loaded LoadFromStore(TlsOptions options, TimeProvider time)
    {
        var subject = options.Subject!.Trim();
        var name = subject.StartsWith("CN=", StringComparison.OrdinalIgnoreCase) ? subject[3..] : subject;
        using var store = new X509Store(options.StoreName, options.StoreLocation);
        try
        {
            store.Open(OpenFlags.ReadOnly | OpenFlags.OpenExistingOnly);
        }
        catch (CryptographicException ex)
        {
            throw new InvalidOperationException($"{options.Section} could not open the {options.StoreLocation} {options.StoreName} store ({ex.Message}): check {options.Section}:StoreName and StoreLocation.", ex);
        }

        var now = time.GetUtcNow().UtcDateTime;
        X509Certificate2? best = null;
        foreach (var candidate in store.Certificates.Find(X509FindType.FindBySubjectName, name, validOnly: false))
        {
            var usable = candidate.HasPrivateKey && candidate.NotBefore.ToUniversalTime() <= now && candidate.NotAfter.ToUniversalTime() > now
                && candidate.GetNameInfo(X509NameType.SimpleName, forIssuer: false).Equals(name, StringComparison.OrdinalIgnoreCase);
            if (usable && (best is null || candidate.NotBefore > best.NotBefore))
            {
                best?.Dispose();
                best = candidate;
            }
            else
            {
                candidate.Dispose();
            }
        }

        if (best is null)
        {
            throw new InvalidOperationException(
                $"{options.Section}:Subject '{subject}': no currently valid certificate with that name and a private key is in the {options.StoreLocation} {options.StoreName} store: import one, or fix the subject or store.");
        }

        return Build(best, []);
    }

    private static Loaded Build(X509Certificate2 leaf, X509Certificate2Collection intermediates)
    {
        if (OperatingSystem.IsWindows())
        {
            // SChannel cannot use the ephemeral key a PEM load makes; a PKCS#12 round trip gives it a stored one.
            leaf = X509CertificateLoader.LoadPkcs12(leaf.Export(X509ContentType.Pkcs12), null);
        }

        // Offline: the chain sent is the one in the file; no intermediate or OCSP fetch holds start-up or a reload.
        return new Loaded(leaf, SslStreamCertificateContext.Create(leaf, intermediates, offline: true));
    }
}

using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Relay.ServiceDefaults.Tls;

/// <summary>
/// Reads the certificate files a setting names (a server's <c>Relay:Tls</c>, the services' <c>Relay:InternalTls</c>,
/// Redis's client certificate and CA): a certificate with its own private key (PEM, its key in the same file or another,
/// or PKCS#12), CA certificates in PEM, and whether a certificate is valid now. Every failure is an
/// <see cref="InvalidOperationException"/> whose message names the setting and says what to fix, for a start-up check to
/// report as it is.
/// </summary>
public static class CertificateFiles
{
    /// <summary>Whether <paramref name="path"/> names a PKCS#12 file (<c>.pfx</c>, <c>.p12</c>), which holds its own key.</summary>
    public static bool IsPkcs12(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return path.EndsWith(".pfx", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".p12", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// The certificate in <paramref name="path"/> with its private key (in <paramref name="keyPath"/>, or in the same file
    /// when that is null; PKCS#12 with <paramref name="password"/>, PEM encrypted with it when
    /// <see cref="CertificateSettings.EncryptedPem"/>), first, then the file's other certificates (its chain).
    /// </summary>
    public static X509Certificate2Collection LoadWithKey(string path, string? keyPath, string? password, CertificateSettings settings)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(settings);
        RequireReadable(path, settings.CertificatePath);
        if (keyPath is not null)
        {
            RequireReadable(keyPath, settings.KeyPath);
        }

        X509Certificate2Collection file;
        X509Certificate2 leaf;
        if (IsPkcs12(path))
        {
            if (keyPath is not null)
            {
                throw new InvalidOperationException($"{settings.KeyPath} is set, but '{path}' is a PKCS#12 file, which holds its own key: remove {settings.KeyPath}.");
            }

            try
            {
                file = X509CertificateLoader.LoadPkcs12CollectionFromFile(path, password);
            }
            catch (CryptographicException ex)
            {
                throw new InvalidOperationException($"{settings.CertificatePath} '{path}' could not be read as PKCS#12 ({ex.Message}): check the file and {settings.Password}.", ex);
            }

            leaf = FirstWithKey(file) ?? throw new InvalidOperationException($"{settings.CertificatePath} '{path}' holds no certificate with a private key: export it with its key.");
        }
        else
        {
            try
            {
                leaf = settings.EncryptedPem && !string.IsNullOrEmpty(password)
                    ? X509Certificate2.CreateFromEncryptedPemFile(path, password, keyPath)
                    : X509Certificate2.CreateFromPemFile(path, keyPath);
            }
            catch (Exception ex) when (ex is CryptographicException or ArgumentException)
            {
                var pem = settings.EncryptedPem
                    ? $"PEM (BEGIN PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY, or ENCRYPTED PRIVATE KEY with {settings.Password})"
                    : "unencrypted PEM (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)";
                throw new InvalidOperationException(
                    $"{settings.CertificatePath} '{path}' could not be paired with the private key in '{keyPath ?? path}' ({ex.Message}): the key must be the certificate's own, in {pem}.", ex);
            }

            file = [];
            file.ImportFromPemFile(path);
        }

        var loaded = new X509Certificate2Collection { leaf };
        foreach (var certificate in file)
        {
            if (certificate.Thumbprint != leaf.Thumbprint)
            {
                loaded.Add(certificate);
            }
        }

        return loaded;
    }

    /// <summary>The CA certificates in PEM file <paramref name="path"/>, named by <paramref name="setting"/>; <paramref name="expected"/> says which CA, for the message.</summary>
    public static X509Certificate2Collection LoadAuthorities(string path, string setting, string expected)
    {
        ArgumentNullException.ThrowIfNull(path);
        RequireReadable(path, setting);
        var authorities = new X509Certificate2Collection();
        try
        {
            authorities.ImportFromPemFile(path);
        }
        catch (Exception ex) when (ex is CryptographicException or IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"{setting} '{path}' could not be read as PEM certificates ({ex.Message}): give {expected} (BEGIN CERTIFICATE), readable by the process's user.", ex);
        }

        return authorities.Count > 0
            ? authorities
            : throw new InvalidOperationException($"{setting} '{path}' holds no PEM certificate: give {expected} (BEGIN CERTIFICATE).");
    }

    /// <summary>
    /// Null while <paramref name="certificate"/> is valid at <paramref name="now"/>; else why not, naming
    /// <paramref name="setting"/> and <paramref name="path"/>, with who <paramref name="refuses"/> it (e.g. "Redis refuses
    /// it") and how to <paramref name="renew"/> it.
    /// </summary>
    public static string? ValidityError(X509Certificate2 certificate, DateTimeOffset now, string setting, string path, string refuses, string renew)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        var notAfter = new DateTimeOffset(certificate.NotAfter.ToUniversalTime(), TimeSpan.Zero);
        var notBefore = new DateTimeOffset(certificate.NotBefore.ToUniversalTime(), TimeSpan.Zero);
        return notAfter <= now ? $"{setting} '{path}' expired at {notAfter.ToString("u", CultureInfo.InvariantCulture)}: {refuses}. {renew}"
            : notBefore > now ? $"{setting} '{path}' is not valid before {notBefore.ToString("u", CultureInfo.InvariantCulture)}: {refuses} until then. Check the clocks, or issue it again."
            : null;
    }

    /// <summary>Throws, naming <paramref name="setting"/>, unless <paramref name="path"/> is a file this process can read.</summary>
    public static void RequireReadable(string path, string setting)
    {
        if (!File.Exists(path))
        {
            throw new InvalidOperationException($"{setting} '{path}' does not exist (relative paths are from {Environment.CurrentDirectory}): give the path of a readable file.");
        }

        try
        {
            using var _ = File.OpenRead(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new InvalidOperationException($"{setting} '{path}' cannot be read ({ex.Message}): the process's user must be able to read it.", ex);
        }
    }

    private static X509Certificate2? FirstWithKey(X509Certificate2Collection all)
    {
        foreach (var certificate in all)
        {
            if (certificate.HasPrivateKey)
            {
                return certificate;
            }
        }

        return null;
    }
}

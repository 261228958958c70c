using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Relay.Bus.Redis;

/// <summary>
/// Start-up checks of <c>Relay:Redis</c>'s certificate files (mutual TLS): the client certificate loads with its own key
/// and is valid now, the CA file holds a certificate. Each message names the setting and says what to fix, where the
/// server's refusal would only say the handshake failed.
/// </summary>
internal static class RedisCertificateCheck
{
    public static void Validate(RedisBusOptions options, DateTimeOffset now, List<string> errors)
    {
        if (!options.HasClientCertificate)
        {
            if (!string.IsNullOrWhiteSpace(options.ClientKeyPath) || !string.IsNullOrEmpty(options.ClientCertificatePassword))
            {
                errors.Add("Relay:Redis:ClientKeyPath or ClientCertificatePassword is set without Relay:Redis:ClientCertificatePath: name the client certificate file too.");
            }
        }
        else
        {
            CheckClientCertificate(options, now, errors);
        }

        if (!string.IsNullOrWhiteSpace(options.TrustedCaPath) && Readable(options.TrustedCaPath, "Relay:Redis:TrustedCaPath", errors))
        {
            var authorities = new X509Certificate2Collection();
            try
            {
                authorities.ImportFromPemFile(options.TrustedCaPath);
            }
            catch (CryptographicException e)
            {
                errors.Add($"Relay:Redis:TrustedCaPath '{options.TrustedCaPath}' is not a PEM certificate ({e.Message}): give the CA certificate that issued the Redis server's (BEGIN CERTIFICATE).");
                return;
            }

            if (authorities.Count == 0)
            {
                errors.Add($"Relay:Redis:TrustedCaPath '{options.TrustedCaPath}' holds no PEM certificate: give the CA certificate that issued the Redis server's (BEGIN CERTIFICATE).");
            }
        }
    }

    private static void CheckClientCertificate(RedisBusOptions options, DateTimeOffset now, List<string> errors)
    {
        var path = options.ClientCertificatePath!;
        var keyPath = string.IsNullOrWhiteSpace(options.ClientKeyPath) ? null : options.ClientKeyPath;
        var pkcs12 = RedisBusOptions.IsPkcs12(path);
        if (pkcs12 && keyPath is not null)
        {
            errors.Add($"Relay:Redis:ClientKeyPath is set, but '{path}' is a PKCS#12 file, which holds its own key: remove Relay:Redis:ClientKeyPath.");
            return;
        }

        if (!Readable(path, "Relay:Redis:ClientCertificatePath", errors) || (keyPath is not null && !Readable(keyPath, "Relay:Redis:ClientKeyPath", errors)))
        {
            return;
        }

        X509Certificate2 certificate;
        try
        {
            certificate = pkcs12 ? X509CertificateLoader.LoadPkcs12FromFile(path, options.ClientCertificatePassword) : X509Certificate2.CreateFromPemFile(path, keyPath);
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            errors.Add(pkcs12
                ? $"Relay:Redis:ClientCertificatePath '{path}' could not be read as PKCS#12 ({e.Message}): check the file and Relay:Redis:ClientCertificatePassword."
                : $"Relay:Redis:ClientCertificatePath '{path}' could not be paired with the private key in '{keyPath ?? path}' ({e.Message}): the key must be the certificate's own, in unencrypted PEM (Relay:Redis:ClientKeyPath).");
            return;
        }

        using (certificate)
        {
            if (!certificate.HasPrivateKey)
            {
                errors.Add($"Relay:Redis:ClientCertificatePath '{path}' holds no private key: export the certificate with its key, or name the key in Relay:Redis:ClientKeyPath.");
            }

            var notAfter = new DateTimeOffset(certificate.NotAfter.ToUniversalTime(), TimeSpan.Zero);
            var notBefore = new DateTimeOffset(certificate.NotBefore.ToUniversalTime(), TimeSpan.Zero);
            if (notAfter <= now)
            {
                errors.Add($"Relay:Redis:ClientCertificatePath '{path}' expired at {notAfter.ToString("u", CultureInfo.InvariantCulture)}: Redis refuses it. Renew the certificate (and its key).");
            }
            else if (notBefore > now)
            {
                errors.Add($"Relay:Redis:ClientCertificatePath '{path}' is not valid before {notBefore.ToString("u", CultureInfo.InvariantCulture)}: Redis refuses it until then. Check the clocks, or issue it again.");
            }
        }
    }

    private static bool Readable(string path, string setting, List<string> errors)
    {
        if (!File.Exists(path))
        {
            errors.Add($"{setting} '{path}' does not exist (relative paths are from {Environment.CurrentDirectory}): give the path of a readable file.");
            return false;
        }

        try
        {
            using var _ = File.OpenRead(path);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            errors.Add($"{setting} '{path}' cannot be read ({e.Message}): the process's user must be able to read it.");
            return false;
        }
    }
}

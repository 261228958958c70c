using System.Security.Cryptography.X509Certificates;
using Relay.ServiceDefaults.Tls;

namespace Relay.Bus.Redis;

/// <summary>
/// Start-up checks of <c>Relay:Redis</c>'s certificate files (mutual TLS), read as every certificate file of Relay is
/// (<see cref="CertificateFiles"/>): the client certificate loads with its own key and is valid now, the CA file holds a
/// certificate. Each message names the setting and says what to fix, where the server's refusal would only say the
/// handshake failed.
/// </summary>
internal static class RedisCertificateCheck
{
    // StackExchange.Redis reads a PEM key unencrypted (SetUserPemCertificate): the password is PKCS#12's only.
    private static readonly CertificateSettings ClientCertificate = new(
        "Relay:Redis:ClientCertificatePath", "Relay:Redis:ClientKeyPath", "Relay:Redis:ClientCertificatePassword", EncryptedPem: false);

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
            Check(errors, () => CheckClientCertificate(options, now));
        }

        if (!string.IsNullOrWhiteSpace(options.TrustedCaPath))
        {
            Check(errors, () =>
            {
                Dispose(CertificateFiles.LoadAuthorities(options.TrustedCaPath, "Relay:Redis:TrustedCaPath", "the CA certificate that issued the Redis server's"));
                return null;
            });
        }
    }

    private static string? CheckClientCertificate(RedisBusOptions options, DateTimeOffset now)
    {
        var path = options.ClientCertificatePath!;
        var keyPath = string.IsNullOrWhiteSpace(options.ClientKeyPath) ? null : options.ClientKeyPath;
        var loaded = CertificateFiles.LoadWithKey(path, keyPath, options.ClientCertificatePassword, ClientCertificate);
        var invalid = CertificateFiles.ValidityError(loaded[0], now, ClientCertificate.CertificatePath, path, "Redis refuses it", "Renew the certificate (and its key).");
        Dispose(loaded);
        return invalid;
    }

    // Checked, not kept: the client certificate is read again on each connect (StackExchange.Redis's own hooks).
    private static void Dispose(X509Certificate2Collection certificates)
    {
        foreach (var certificate in certificates)
        {
            certificate.Dispose();
        }
    }

    // One check's message, or the message of the InvalidOperationException it threw, as an error.
    private static void Check(List<string> errors, Func<string?> check)
    {
        try
        {
            if (check() is { } error)
            {
                errors.Add(error);
            }
        }
        catch (InvalidOperationException ex)
        {
            errors.Add(ex.Message);
        }
    }
}

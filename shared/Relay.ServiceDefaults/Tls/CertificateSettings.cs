namespace Relay.ServiceDefaults.Tls;

/// <summary>
/// The settings that name a certificate's files, as the messages of <see cref="CertificateFiles.LoadWithKey"/> name them
/// (e.g. <c>Relay:Redis:ClientCertificatePath</c>); <paramref name="EncryptedPem"/> where the key may be encrypted PEM.
/// </summary>
/// <param name="CertificatePath">The setting that names the certificate file.</param>
/// <param name="KeyPath">The setting that names the key file.</param>
/// <param name="Password">The setting that holds the password of a PKCS#12 file (and of an encrypted PEM key).</param>
/// <param name="EncryptedPem">Whether a PEM key may be encrypted with the password.</param>
public sealed record CertificateSettings(string CertificatePath, string KeyPath, string Password, bool EncryptedPem);

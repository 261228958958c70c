using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Relay.Testing;

/// <summary>A self-signed server certificate for 127.0.0.1 made in the test, and the PEM files a node reads it from.</summary>
public sealed class TestCertificate : IDisposable
{
    private TestCertificate(X509Certificate2 certificate, string certificatePem, string keyPem)
    {
        Certificate = certificate;
        CertificatePem = certificatePem;
        KeyPem = keyPem;
    }

    /// <summary>The certificate, with its private key.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>Its SHA-1 thumbprint, as a TLS client's check sees it.</summary>
    public string Thumbprint => Certificate.Thumbprint;

    /// <summary>The certificate in PEM.</summary>
    public string CertificatePem { get; }

    /// <summary>Its private key in PEM (PKCS#8).</summary>
    public string KeyPem { get; }

    /// <summary>A P-256 certificate named <paramref name="name"/> for 127.0.0.1 and localhost, for server authentication, valid for 30 days unless told.</summary>
    public static TestCertificate Create(string name = "relay-test", DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = LoopbackRequest(name, key, new Oid("1.3.6.1.5.5.7.3.1"));
        var now = DateTimeOffset.UtcNow;
        var certificate = request.CreateSelfSigned(notBefore ?? now.AddMinutes(-5), notAfter ?? now.AddDays(30));
        return new TestCertificate(certificate, certificate.ExportCertificatePem(), key.ExportPkcs8PrivateKeyPem());
    }

    /// <summary>A private CA (P-256, self-signed, may sign certificates), as the internal CA of a deployment.</summary>
    public static TestCertificate CreateAuthority(string name = "relay-test-ca")
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: true, hasPathLengthConstraint: false, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, critical: true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        var now = DateTimeOffset.UtcNow;
        var certificate = request.CreateSelfSigned(now.AddDays(-1), now.AddYears(1));
        return new TestCertificate(certificate, certificate.ExportCertificatePem(), key.ExportPkcs8PrivateKeyPem());
    }

    /// <summary>
    /// A certificate this CA issues to a service named <paramref name="name"/>, for 127.0.0.1 and localhost, good for
    /// both ends of TLS (server and client authentication, as a service that serves and calls), valid for 30 days unless told.
    /// </summary>
    public TestCertificate Issue(string name, DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = LoopbackRequest(name, key, new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2"));
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: false, hasPathLengthConstraint: false, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Certificate, includeKeyIdentifier: true, includeIssuerAndSerial: false));
        var now = DateTimeOffset.UtcNow;
        var serial = new byte[16];
        RandomNumberGenerator.Fill(serial);
        serial[0] &= 0x7f;
        using var issued = request.Create(Certificate, notBefore ?? now.AddMinutes(-5), notAfter ?? now.AddDays(30), serial);
        var certificate = issued.CopyWithPrivateKey(key);
        return new TestCertificate(certificate, certificate.ExportCertificatePem(), key.ExportPkcs8PrivateKeyPem());
    }

    // A leaf's request: named CN=name, for 127.0.0.1 and localhost, for these usages, signing only.
    private static CertificateRequest LoopbackRequest(string name, ECDsa key, params Oid[] usages)
    {
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([.. usages], critical: false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: false));
        return request;
    }

    /// <summary>Writes the certificate and key as <c>{name}.pem</c> and <c>{name}.key</c> in <paramref name="directory"/>; returns both paths.</summary>
    public (string CertificatePath, string KeyPath) WriteFiles(string directory, string name)
    {
        var paths = (Path.Combine(directory, name + ".pem"), Path.Combine(directory, name + ".key"));
        WriteTo(paths.Item1, paths.Item2);
        return paths;
    }

    /// <summary>Writes the certificate and key to <paramref name="certificatePath"/> and <paramref name="keyPath"/>, each replaced whole (a rename).</summary>
    public void WriteTo(string certificatePath, string keyPath)
    {
        Replace(certificatePath, CertificatePem);
        Replace(keyPath, KeyPem);
    }

    /// <summary>A client check that accepts exactly the certificates given, and records each one it was shown.</summary>
    public static RemoteCertificateValidationCallback Accepting(ICollection<string> seen, params TestCertificate[] accepted) => (_, certificate, _, _) =>
    {
        var thumbprint = certificate?.GetCertHashString() ?? string.Empty;
        lock (seen)
        {
            seen.Add(thumbprint);
        }

        return accepted.Any(a => a.Thumbprint == thumbprint);
    };

    /// <summary>Writes <paramref name="text"/> beside <paramref name="path"/> and renames it over it, so a reader never sees half a file.</summary>
    public static void Replace(string path, string text)
    {
        var temporary = path + ".new";
        File.WriteAllText(temporary, text);
        File.Move(temporary, path, overwrite: true);
    }

    /// <inheritdoc />
    public void Dispose() => Certificate.Dispose();
}

using System.Buffers.Text;
using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Relay.Auth.Verification.Keys;

/// <summary>
/// The public half of the EC P-256 key behind Relay's ES256 tokens: what a node needs to check them (the verifier, the
/// <c>kid</c>, the JWKS document) and nothing that signs. The private half is the issuer's <c>SigningKey</c>.
/// </summary>
internal sealed class VerificationKey : IDisposable
{
    /// <summary>The JWS <c>alg</c> of Relay's tokens.</summary>
    public const string Algorithm = "ES256";

    private readonly ECDsa _public;

    public VerificationKey(ECParameters publicParameters, SigningKeySource source, string? path)
    {
        _public = ECDsa.Create(publicParameters);
        Source = source;
        Path = path;
        KeyId = Thumbprint(publicParameters);
        Jwks = WriteJwks(publicParameters, KeyId);
    }

    /// <summary>The JWKS <c>kid</c>: the RFC 7638 thumbprint of the public key, so every node holding the key agrees on it.</summary>
    public string KeyId { get; }

    /// <summary>The public key as SubjectPublicKeyInfo (DER), for other nodes to verify this key's tokens.</summary>
    public byte[] PublicKeyDer => _public.ExportSubjectPublicKeyInfo();

    /// <summary>The UTF-8 body of <c>/.well-known/jwks.json</c>.</summary>
    public byte[] Jwks { get; }

    public SigningKeySource Source { get; }

    public string? Path { get; }

    /// <summary>
    /// For a node that checks tokens but does not issue them: the public key of <see cref="RelayAuthOptions.SigningKeyPath"/>
    /// (a private key file gives its public half), or one generated when it is not set, whose private half is dropped.
    /// </summary>
    public static VerificationKey Create(RelayAuthOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (string.IsNullOrWhiteSpace(options.SigningKeyPath))
        {
            using var generated = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            return new VerificationKey(generated.ExportParameters(includePrivateParameters: false), SigningKeySource.Generated, null);
        }

        if (!TryLoad(options.SigningKeyPath, out var key, out var hasPrivateKey, out var error))
        {
            throw new InvalidOperationException(error);
        }

        using (key)
        {
            var source = hasPrivateKey ? SigningKeySource.File : SigningKeySource.PublicKeyFile;
            return new VerificationKey(key.ExportParameters(includePrivateParameters: false), source, options.SigningKeyPath);
        }
    }

    /// <summary>Reads a PEM EC P-256 key (private, or public only); the error says what to fix.</summary>
    public static bool TryLoad(string path, [NotNullWhen(true)] out ECDsa? key, out bool hasPrivateKey, out string error)
    {
        key = null;
        hasPrivateKey = false;
        string pem;
        try
        {
            pem = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            error = $"Relay:Auth:SigningKeyPath '{path}' cannot be read ({ex.Message}); point it at a PEM file with an EC P-256 private key, or remove it to generate a key at start";
            return false;
        }

        var ecdsa = ECDsa.Create();
        try
        {
            ecdsa.ImportFromPem(pem);
            var curve = ecdsa.ExportParameters(includePrivateParameters: false).Curve;
            if (curve.Oid?.Value != ECCurve.NamedCurves.nistP256.Oid.Value)
            {
                ecdsa.Dispose();
                error = $"Relay:Auth:SigningKeyPath '{path}' holds an EC key on curve '{curve.Oid?.FriendlyName ?? curve.Oid?.Value ?? "explicit"}'; ES256 needs P-256 (openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt)";
                return false;
            }
        }
        catch (Exception ex) when (ex is ArgumentException or CryptographicException)
        {
            ecdsa.Dispose();
            error = $"Relay:Auth:SigningKeyPath '{path}' is not an unencrypted PEM EC key ({ex.Message}); create one with: openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt";
            return false;
        }

        try
        {
            ecdsa.ExportParameters(includePrivateParameters: true);
            hasPrivateKey = true;
        }
        catch (CryptographicException)
        {
            hasPrivateKey = false;
        }

        key = ecdsa;
        error = string.Empty;
        return true;
    }

    /// <summary>Checks a JWS ES256 signature (r‖s, 64 bytes) over <paramref name="signingInput"/>.</summary>
    public bool Verify(ReadOnlySpan<byte> signingInput, ReadOnlySpan<byte> signature) =>
        signature.Length == 64 && _public.VerifyData(signingInput, signature, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);

    public void Dispose() => _public.Dispose();

    private static string Thumbprint(ECParameters parameters)
    {
        // RFC 7638: the required members in lexicographic order, no whitespace.
        var json = $"{{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"{Base64Url.EncodeToString(parameters.Q.X)}\",\"y\":\"{Base64Url.EncodeToString(parameters.Q.Y)}\"}}";
        return Base64Url.EncodeToString(SHA256.HashData(Encoding.UTF8.GetBytes(json)));
    }

    private static byte[] WriteJwks(ECParameters parameters, string keyId)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            writer.WriteStartObject();
            writer.WriteStartArray("keys");
            writer.WriteStartObject();
            writer.WriteString("kty", "EC");
            writer.WriteString("crv", "P-256");
            writer.WriteString("x", Base64Url.EncodeToString(parameters.Q.X));
            writer.WriteString("y", Base64Url.EncodeToString(parameters.Q.Y));
            writer.WriteString("kid", keyId);
            writer.WriteString("use", "sig");
            writer.WriteString("alg", Algorithm);
            writer.WriteEndObject();
            writer.WriteEndArray();
            writer.WriteEndObject();
        }

        return stream.ToArray();
    }
}

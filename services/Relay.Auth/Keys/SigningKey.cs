using System.Security.Cryptography;
using Microsoft.IdentityModel.Tokens;
using Relay.Auth.Verification;
using Relay.Auth.Verification.Keys;

namespace Relay.Auth.Keys;

/// <summary>
/// The EC P-256 key that signs Relay's ES256 tokens: the private signing credentials, with the
/// <see cref="VerificationKey"/> that checks them. Only the token issuer touches the private half.
/// </summary>
internal sealed class SigningKey : IDisposable
{
    public const string Algorithm = VerificationKey.Algorithm;

    private readonly ECDsa? _private;

    private SigningKey(ECDsa? privateKey, VerificationKey publicKey)
    {
        _private = privateKey;
        Public = publicKey;
        if (privateKey is not null)
        {
            Credentials = new SigningCredentials(new ECDsaSecurityKey(privateKey) { KeyId = publicKey.KeyId }, Algorithm);
        }
    }

    /// <summary>The public half, which token validation uses.</summary>
    public VerificationKey Public { get; }

    /// <summary>The signing credentials; null when only the public key was given.</summary>
    public SigningCredentials? Credentials { get; }

    /// <summary>Loads the key of <see cref="RelayAuthOptions.SigningKeyPath"/>, or generates one when it is not set.</summary>
    public static SigningKey Create(RelayAuthOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (string.IsNullOrWhiteSpace(options.SigningKeyPath))
        {
            var generated = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            return new SigningKey(generated, new VerificationKey(generated.ExportParameters(includePrivateParameters: false), SigningKeySource.Generated, null));
        }

        if (!VerificationKey.TryLoad(options.SigningKeyPath, out var key, out var hasPrivateKey, out var error))
        {
            throw new InvalidOperationException(error);
        }

        var publicParameters = key.ExportParameters(includePrivateParameters: false);
        if (hasPrivateKey)
        {
            return new SigningKey(key, new VerificationKey(publicParameters, SigningKeySource.File, options.SigningKeyPath));
        }

        key.Dispose();
        return new SigningKey(null, new VerificationKey(publicParameters, SigningKeySource.PublicKeyFile, options.SigningKeyPath));
    }

    public void Dispose()
    {
        _private?.Dispose();
        Public.Dispose();
    }
}

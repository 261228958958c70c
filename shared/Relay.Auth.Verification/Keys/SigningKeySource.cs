namespace Relay.Auth.Verification.Keys;

/// <summary>Where the ES256 signing key came from.</summary>
internal enum SigningKeySource
{
    /// <summary>Generated at start: tokens die with the process.</summary>
    Generated,

    /// <summary>A private key from <c>SigningKeyPath</c>: this node issues and verifies.</summary>
    File,

    /// <summary>A public key from <c>SigningKeyPath</c>: this node verifies but cannot issue.</summary>
    PublicKeyFile,
}

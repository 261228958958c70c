using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Relay.Auth.Verification.Keys;

namespace Relay.Auth.Verification;

/// <summary>Builds the key store and signing key at start, so a bad key file stops the host and the first request pays nothing.</summary>
internal sealed partial class RelayAuthStartup(KeyStore keys, VerificationKey signingKey, ILogger<RelayAuthStartup> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (keys.AppCount == 0)
        {
            LogNoApps(logger);
        }
        else
        {
            LogKeysLoaded(logger, keys.AppCount, keys.KeyCount);
        }

        switch (signingKey.Source)
        {
            case SigningKeySource.Generated:
                LogSigningKeyGenerated(logger, signingKey.KeyId);
                break;
            case SigningKeySource.File:
                LogSigningKeyLoaded(logger, signingKey.KeyId, signingKey.Path);
                break;
            case SigningKeySource.PublicKeyFile:
                LogVerifyOnly(logger, signingKey.KeyId, signingKey.Path);
                break;
        }

        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace Relay.Auth.Verification.Keys;

/// <summary>
/// With keys from configuration: when the configuration reloads (an edited <c>appsettings.json</c>; ASP.NET Core watches it),
/// builds <c>Relay:Auth</c> again, validates it as at start, and swaps in its apps and keys. A reload that fails validation
/// is logged and ignored: the keys in use stay, as they do when the new configuration has no apps at all (a settings
/// file mid-rewrite or removed reads as empty). Only apps and keys change this way; other <c>Relay:Auth</c> settings
/// take a restart.
/// </summary>
/// <remarks>
/// Not <see cref="IOptionsMonitor{TOptions}"/>: it drops its cached value before validating the new one, so a bad file
/// would throw on the reload thread and leave no keys at all (dotnet/runtime#44381).
/// </remarks>
internal sealed partial class KeyReloader(
    IOptions<RelayAuthOptions> startOptions,
    IOptionsFactory<RelayAuthOptions> factory,
    IEnumerable<IOptionsChangeTokenSource<RelayAuthOptions>> sources,
    KeyStore keys,
    ILogger<KeyReloader> logger) : IHostedService, IDisposable
{
    private readonly List<IDisposable> _registrations = [];
    private readonly Lock _reloading = new();

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (startOptions.Value.KeySource == "configuration")
        {
            foreach (var source in sources)
            {
                _registrations.Add(ChangeToken.OnChange(source.GetChangeToken, Reload));
            }
        }

        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        Dispose();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        foreach (var registration in _registrations)
        {
            registration.Dispose();
        }

        _registrations.Clear();
    }

    /// <summary>Reads the keys from configuration again.</summary>
    private void Reload()
    {
        // Two reloads at once (file watchers fire twice) would race to the swap: one at a time, each reading the latest.
        lock (_reloading)
        {
            RelayAuthOptions options;
            try
            {
                options = factory.Create(Options.DefaultName);
            }
            catch (OptionsValidationException ex)
            {
                LogReloadRefused(logger, string.Join("; ", ex.Failures));
                return;
            }

            if (options.KeySource != "configuration")
            {
                LogKeySourceChanged(logger, options.KeySource);
                return;
            }

            if (options.Apps.Count == 0 && keys.KeyCount > 0)
            {
                // What an appsettings.json being rewritten, or removed, looks like for a moment: the provider empties.
                LogReloadEmpty(logger);
                return;
            }

            if (keys.Replace(KeyStore.FromOptions(options)))
            {
                LogReloaded(logger, keys.AppCount, keys.KeyCount, keys.Version);
            }
        }
    }

    [LoggerMessage(EventId = 1006, EventName = "KeysReloaded", Level = LogLevel.Information, Message = "Configuration changed: now {AppCount} apps with {KeyCount} keys (key set version {Version}); connections whose key went or changed are checked within a second")]
    private static partial void LogReloaded(ILogger logger, int appCount, int keyCount, long version);

    [LoggerMessage(EventId = 1007, EventName = "KeysReloadRefused", Level = LogLevel.Warning, Message = "Configuration changed but Relay:Auth is not valid, so the keys in use stay: {Failures}")]
    private static partial void LogReloadRefused(ILogger logger, string failures);

    [LoggerMessage(EventId = 1009, EventName = "KeysReloadEmpty", Level = LogLevel.Warning, Message = "Configuration changed and Relay:Auth:Apps is now empty; taken for a settings file being rewritten or removed, so the keys in use stay (restart to run with no apps)")]
    private static partial void LogReloadEmpty(ILogger logger);

    [LoggerMessage(EventId = 1008, EventName = "KeySourceChanged", Level = LogLevel.Warning, Message = "Configuration changed Relay:Auth:KeySource to '{KeySource}'; that takes a restart, so the keys in use stay")]
    private static partial void LogKeySourceChanged(ILogger logger, string keySource);
}

using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Relay.ServiceDefaults.Tls;

/// <summary>
/// The certificate TLS listeners serve, reloaded without a restart: every <see cref="TlsOptions.ReloadInterval"/> the
/// files' timestamps and sizes are compared with the last look (the store is searched again), and a change is loaded
/// and swapped in for the handshakes that follow; connections already open keep theirs. A new file that does not load
/// (a key that does not match yet, half written) leaves the served certificate in place and is logged; it is tried
/// again when the files change again.
/// </summary>
internal sealed partial class ServerCertificate(IOptions<TlsOptions> options, TimeProvider time, ILogger<ServerCertificate> logger) : IHostedService, IDisposable
{
    /// <summary>How long before its end a certificate served is warned about.</summary>
    internal static readonly TimeSpan ExpiryWarning = TimeSpan.FromDays(14);

    private readonly Lock _loading = new();
    private volatile CertificateLoader.Loaded? _current;
    private FileStamp[] _stamps = [];
    private ITimer? _timer;

    /// <summary>The certificate served now (loaded on first use).</summary>
    public X509Certificate2 Certificate => Current.Certificate;

    private CertificateLoader.Loaded Current => _current ?? LoadFirst();

    /// <summary>The certificate served now with its chain, for a listener that runs its own handshakes (MQTT over TLS).</summary>
    internal SslStreamCertificateContext Context => Current.Context;

    /// <summary>Kestrel's per-connection callback: the current certificate, with Kestrel choosing the ALPN protocols.</summary>
    public static ValueTask<SslServerAuthenticationOptions> OnConnection(TlsHandshakeCallbackContext context) =>
        new(new SslServerAuthenticationOptions { ServerCertificateContext = ((ServerCertificate)context.State!).Current.Context });

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (!options.Value.Enabled)
        {
            return Task.CompletedTask;
        }

        _ = Current;
        var interval = options.Value.ReloadInterval;
        _timer = time.CreateTimer(static state => ((ServerCertificate)state!).Look(), this, interval, interval);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _timer?.Dispose();
        return Task.CompletedTask;
    }

    public void Dispose() => _timer?.Dispose();

    /// <summary>One look for a renewed certificate (the timer's tick; tests call it).</summary>
    internal void Look()
    {
        var settings = options.Value;
        var files = CertificateLoader.Files(settings);
        FileStamp[] stamps;
        lock (_loading)
        {
            stamps = FileStamp.Of(files);
            if (files.Length > 0 && stamps.AsSpan().SequenceEqual(_stamps))
            {
                return;
            }

            // Remembered even when the load fails: the same broken files are reported once, not every interval.
            _stamps = stamps;
        }

        CertificateLoader.Loaded loaded;
        try
        {
            loaded = CertificateLoader.Load(settings, time);
        }
        catch (Exception ex)
        {
            // Whatever the new files hold, the timer thread must not take the process down with it.
            LogReloadFailed(logger, _current?.Certificate.Thumbprint, ex.Message);
            return;
        }

        var previous = _current;
        if (previous is not null && previous.Certificate.Thumbprint == loaded.Certificate.Thumbprint)
        {
            return;
        }

        _current = loaded;
        LogReloaded(logger, loaded.Certificate.Thumbprint, previous?.Certificate.Thumbprint, loaded.Certificate.NotAfter.ToUniversalTime());
        WarnIfExpiring(loaded.Certificate);

        // The old certificate is not disposed: handshakes begun with it may still be using it.
    }

    private CertificateLoader.Loaded LoadFirst()
    {
        lock (_loading)
        {
            if (_current is { } loaded)
            {
                return loaded;
            }

            var settings = options.Value;
            _stamps = FileStamp.Of(CertificateLoader.Files(settings));
            loaded = CertificateLoader.Load(settings, time);
            LogLoaded(logger, loaded.Certificate.Subject, loaded.Certificate.Thumbprint, loaded.Certificate.NotAfter.ToUniversalTime());
            WarnIfExpiring(loaded.Certificate);
            _current = loaded;
            return loaded;
        }
    }

    private void WarnIfExpiring(X509Certificate2 certificate)
    {
        var now = time.GetUtcNow().UtcDateTime;
        var notAfter = certificate.NotAfter.ToUniversalTime();
        if (notAfter <= now)
        {
            LogExpired(logger, certificate.Thumbprint, notAfter);
        }
        else if (notAfter - now < ExpiryWarning)
        {
            LogExpiresSoon(logger, certificate.Thumbprint, notAfter);
        }

        if (certificate.NotBefore.ToUniversalTime() > now)
        {
            LogNotYetValid(logger, certificate.Thumbprint, certificate.NotBefore.ToUniversalTime());
        }
    }

    [LoggerMessage(EventId = 920, EventName = "TlsCertificateLoaded", Level = LogLevel.Information, Message = "TLS: serving certificate {Subject} ({Thumbprint}), valid until {NotAfter:u}")]
    private static partial void LogLoaded(ILogger logger, string subject, string thumbprint, DateTime notAfter);

    [LoggerMessage(EventId = 921, EventName = "TlsCertificateReloaded", Level = LogLevel.Information, Message = "TLS: new connections get certificate {Thumbprint} (was {Previous}), valid until {NotAfter:u}")]
    private static partial void LogReloaded(ILogger logger, string thumbprint, string? previous, DateTime notAfter);

    [LoggerMessage(EventId = 922, EventName = "TlsCertificateReloadFailed", Level = LogLevel.Error, Message = "TLS: the changed certificate could not be loaded; still serving {Thumbprint}: {Reason}")]
    private static partial void LogReloadFailed(ILogger logger, string? thumbprint, string reason);

    [LoggerMessage(EventId = 923, EventName = "TlsCertificateExpired", Level = LogLevel.Warning, Message = "TLS: certificate {Thumbprint} expired at {NotAfter:u}; clients that check it will refuse the connection. Renew it: the new files are picked up without a restart")]
    private static partial void LogExpired(ILogger logger, string thumbprint, DateTime notAfter);

    [LoggerMessage(EventId = 924, EventName = "TlsCertificateExpiresSoon", Level = LogLevel.Warning, Message = "TLS: certificate {Thumbprint} expires at {NotAfter:u}; renew it (the new files are picked up without a restart)")]
    private static partial void LogExpiresSoon(ILogger logger, string thumbprint, DateTime notAfter);

    [LoggerMessage(EventId = 925, EventName = "TlsCertificateNotYetValid", Level = LogLevel.Warning, Message = "TLS: certificate {Thumbprint} is not valid before {NotBefore:u}; clients that check it will refuse the connection until then")]
    private static partial void LogNotYetValid(ILogger logger, string thumbprint, DateTime notBefore);

    /// <summary>What a look compares: a file's last write time and length (missing: both zero).</summary>
    private readonly record struct FileStamp(DateTime LastWrite, long Length)
    {
        public static FileStamp[] Of(string[] files)
        {
            var stamps = new FileStamp[files.Length];
            for (var i = 0; i < files.Length; i++)
            {
                var info = new FileInfo(files[i]);
                stamps[i] = info.Exists ? new FileStamp(info.LastWriteTimeUtc, info.Length) : default;
            }

            return stamps;
        }
    }
}

using System.Net;
using System.Net.Http;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Relay.ServiceDefaults.Tls;

/// <summary>
/// This service's side of mutual TLS between Relay's services (<see cref="InternalTlsOptions"/>): its certificate
/// (reloaded without a restart, as <c>Relay:Tls</c>'s is) and the internal CA, which alone decides whether a peer's
/// certificate is trusted: the machine's trust store plays no part, so a certificate from a public CA, another private
/// CA or an expired one is refused.
/// </summary>
public sealed class InternalTls : IHostedService, IDisposable
{
    /// <summary>TLS server authentication (the callee's certificate).</summary>
    private static readonly Oid ServerAuthentication = new("1.3.6.1.5.5.7.3.1");

    /// <summary>TLS client authentication (the caller's certificate).</summary>
    private static readonly Oid ClientAuthentication = new("1.3.6.1.5.5.7.3.2");

    private readonly InternalTlsOptions _options;
    private readonly TimeProvider _time;
    private readonly ServerCertificate? _certificate;
    private readonly Lazy<X509Certificate2Collection> _authorities;

    /// <summary>Made by DI (<c>AddRelayServiceDefaults()</c>).</summary>
    public InternalTls(IOptions<InternalTlsOptions> options, TimeProvider time, ILoggerFactory loggers)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(loggers);
        _options = options.Value;
        _time = time;
        _authorities = new(() => LoadAuthorities(_options.CaPath!));
        if (_options.Enabled)
        {
            // The same loading, renewal and expiry warnings as the public certificate, on this one's files.
            _certificate = new ServerCertificate(Options.Create(_options.AsCertificate()), time, loggers.CreateLogger<ServerCertificate>());
        }
    }

    /// <summary>Whether this service has an internal certificate (its calls to other services present it).</summary>
    public bool Enabled => _certificate is not null;

    /// <summary>The internal listener's port; null when this service serves none.</summary>
    public int? Port => Enabled ? _options.Port : null;

    /// <summary>Whether <paramref name="endpoint"/> is the internal listener (every address, <see cref="Port"/>).</summary>
    public bool IsInternalListener(EndPoint? endpoint) =>
        Port is { } port && endpoint is IPEndPoint ip && ip.Port == port && (ip.Address.Equals(IPAddress.IPv6Any) || ip.Address.Equals(IPAddress.Any));

    /// <summary>
    /// Whether a request came in on the internal listener, which only lets in callers whose certificate the CA issued:
    /// always true while this service serves no internal listener.
    /// </summary>
    public bool Admits(ConnectionInfo connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        return Port is not { } port || (connection.LocalPort == port && connection.ClientCertificate is not null);
    }

    /// <summary>
    /// Whether <paramref name="peer"/> chains to the internal CA, is valid now and may be used for
    /// <paramref name="usage"/> (when it names its usages).
    /// </summary>
    private bool Trusts(X509Certificate? peer, Oid usage)
    {
        if (peer is null || _authorities.Value.Count == 0)
        {
            return false;
        }

        var now = _time.GetUtcNow().UtcDateTime;
        if (peer is X509Certificate2 certificate)
        {
            return Chains(certificate, _authorities.Value, now, usage);
        }

        using var copy = X509CertificateLoader.LoadCertificate(peer.GetRawCertData());
        return Chains(copy, _authorities.Value, now, usage);
    }

    /// <summary>Kestrel's TLS for the internal listener: this service's certificate, and a client certificate from the CA required.</summary>
    internal HttpsConnectionAdapterOptions ListenerOptions() => new()
    {
        ServerCertificateSelector = (_, _) => _certificate!.Certificate,
        ClientCertificateMode = ClientCertificateMode.RequireCertificate,

        // The platform's verdict (errors) is ignored: it knows nothing of the internal CA; Trusts decides alone.
        ClientCertificateValidation = (certificate, _, _) => Trusts(certificate, ClientAuthentication),
        CheckCertificateRevocation = false,
    };

    /// <summary>
    /// The handler of an <see cref="HttpClient"/> that calls another Relay service: with an internal certificate, it
    /// presents it and trusts only a server certificate from the CA for the name called; without, a plain handler.
    /// </summary>
    public SocketsHttpHandler CreateHandler()
    {
        var handler = new SocketsHttpHandler();
        if (_certificate is { } certificate)
        {
            handler.SslOptions.LocalCertificateSelectionCallback = (_, _, _, _, _) => certificate.Certificate;

            // A name mismatch or a missing certificate still fails; only the chain is judged against the CA instead.
            handler.SslOptions.RemoteCertificateValidationCallback = (_, peer, _, errors) =>
                (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) == SslPolicyErrors.None && Trusts(peer, ServerAuthentication);
        }

        return handler;
    }

    /// <summary>Reads the CA certificates of <paramref name="path"/> (PEM); an <see cref="InvalidOperationException"/> says what is wrong.</summary>
    internal static X509Certificate2Collection LoadAuthorities(string path) =>
        CertificateFiles.LoadAuthorities(path, InternalTlsOptions.SectionName + ":CaPath", "the internal CA's certificate");

    /// <summary>
    /// Whether <paramref name="certificate"/> chains to one of <paramref name="authorities"/> and nothing else, is valid at
    /// <paramref name="now"/>, and (with <paramref name="usage"/>) may be used for it when it names its usages.
    /// </summary>
    internal static bool Chains(X509Certificate2 certificate, X509Certificate2Collection authorities, DateTime now, Oid? usage)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(authorities);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        chain.ChainPolicy.VerificationTime = now;
        if (usage is not null)
        {
            chain.ChainPolicy.ApplicationPolicy.Add(usage);
        }

        return chain.Build(certificate);
    }

    /// <inheritdoc />
    public Task StartAsync(CancellationToken cancellationToken) => _certificate?.StartAsync(cancellationToken) ?? Task.CompletedTask;

    /// <inheritdoc />
    public Task StopAsync(CancellationToken cancellationToken) => _certificate?.StopAsync(cancellationToken) ?? Task.CompletedTask;

    /// <inheritdoc />
    public void Dispose() => _certificate?.Dispose();
}

using System.Globalization;
using System.Net;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace Relay.ServiceDefaults.Tls;

/// <summary>
/// Which of the host's listeners serve TLS: with <c>Relay:Tls</c> on, every TCP listener, or only
/// <see cref="TlsOptions.Ports"/>; in any case the ports an <c>https://</c> URL names (<c>urls</c>,
/// <c>ASPNETCORE_HTTPS_PORTS</c>, <c>Kestrel:Endpoints:*:Url</c>), whose TLS Kestrel sets up. A transport that reads
/// plain bytes off a socket before Kestrel does (the ingress's own realtime transport) asks here and stays off these.
/// </summary>
public sealed class TlsListeners
{
    private readonly bool _everyTcpListener;
    private readonly HashSet<int> _ports;
    private readonly InternalTls? _internal;

    /// <summary>Reads the TLS settings and the host's listen URLs.</summary>
    public TlsListeners(IOptions<TlsOptions> options, IConfiguration configuration)
        : this(options, configuration, null)
    {
    }

    /// <summary>Reads the TLS settings and the host's listen URLs; <paramref name="internalTls"/>'s listener serves its own TLS.</summary>
    public TlsListeners(IOptions<TlsOptions> options, IConfiguration configuration, InternalTls? internalTls)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(configuration);
        _internal = internalTls;
        var settings = options.Value;
        Enabled = settings.Enabled;
        _everyTcpListener = settings.Enabled && settings.Ports.Count == 0;
        _ports = [.. settings.Ports, .. HttpsPorts(configuration)];
    }

    /// <summary>Whether Relay serves its certificate (<c>Relay:Tls</c> names one).</summary>
    public bool Enabled { get; }

    /// <summary>Whether connections to <paramref name="endpoint"/> speak TLS first.</summary>
    public bool ServesTls(EndPoint? endpoint) =>
        endpoint is IPEndPoint ip && (_everyTcpListener || _ports.Contains(ip.Port) || _internal?.IsInternalListener(endpoint) == true);

    /// <summary>
    /// Whether Relay's certificate is put on <paramref name="endpoint"/> (Kestrel's own configuration serves the other
    /// https:// ones, <see cref="InternalTls"/> the internal listener).
    /// </summary>
    internal bool ServesRelayCertificate(EndPoint? endpoint) => Enabled && ServesTls(endpoint) && _internal?.IsInternalListener(endpoint) != true;

    /// <summary>The ports of every <c>https://</c> URL Kestrel will bind from configuration.</summary>
    private static IEnumerable<int> HttpsPorts(IConfiguration configuration)
    {
        foreach (var url in (configuration["urls"] ?? string.Empty).Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (TryHttpsPort(url, out var port))
            {
                yield return port;
            }
        }

        foreach (var entry in (configuration["https_ports"] ?? string.Empty).Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (int.TryParse(entry, NumberStyles.None, CultureInfo.InvariantCulture, out var port))
            {
                yield return port;
            }
        }

        foreach (var endpoint in configuration.GetSection("Kestrel:Endpoints").GetChildren())
        {
            if (TryHttpsPort(endpoint["Url"], out var port))
            {
                yield return port;
            }
        }
    }

    private static bool TryHttpsPort(string? url, out int port)
    {
        port = 0;
        if (string.IsNullOrWhiteSpace(url))
        {
            return false;
        }

        try
        {
            var address = BindingAddress.Parse(url);
            port = address.Port;
            return string.Equals(address.Scheme, "https", StringComparison.OrdinalIgnoreCase) && !address.IsNamedPipe && !address.IsUnixPipe;
        }
        catch (FormatException)
        {
            // Kestrel refuses it at bind with its own message.
            return false;
        }
    }
}

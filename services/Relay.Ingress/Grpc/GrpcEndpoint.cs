using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;
using Relay.ServiceDefaults;

namespace Relay.Ingress.Grpc;

/// <summary>
/// The gRPC port (<c>Relay:Grpc:Port</c>): a Kestrel endpoint on every address that speaks HTTP/2 only, since a
/// cleartext HTTP/2 client connects with prior knowledge and Kestrel only answers that on an HTTP/2-only endpoint.
/// It is added to the host's listen addresses (<c>--urls</c>, <c>ASPNETCORE_URLS</c>) just before Kestrel binds them,
/// rather than configured in code, which would make Kestrel drop those URLs; an endpoint default marks it HTTP/2.
/// Relay's own realtime transport leaves it to Kestrel's (<see cref="Owns"/>).
/// </summary>
public sealed class GrpcEndpoint : IConfigureOptions<KestrelServerOptions>
{
    private readonly GrpcOptions _options;
    private ListenOptions? _listen;

    /// <summary>Creates the endpoint from the options.</summary>
    public GrpcEndpoint(IOptions<GrpcOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Value;
    }

    /// <summary>The address added to the host's: every address, the configured port.</summary>
    internal string Address => $"http://*:{_options.Port}";

    /// <summary>Whether the node serves plain gRPC on a port of its own.</summary>
    public bool Enabled => _options is { Enabled: true, Port: >= 0 };

    /// <summary>The port the gRPC endpoint took (the configured one, or the one picked for 0); null before it bound or when off.</summary>
    public int? Port => Enabled && _listen?.EndPoint is IPEndPoint { Port: > 0 } bound ? bound.Port : null;

    /// <summary>Whether <paramref name="endpoint"/> is the gRPC endpoint (every address, the configured port).</summary>
    public bool Owns(EndPoint? endpoint) =>
        Enabled && endpoint is IPEndPoint ip && ip.Port == _options.Port
        && (ip.Address.Equals(IPAddress.IPv6Any) || ip.Address.Equals(IPAddress.Any));

    /// <summary>
    /// Fails start-up with a message naming the setting when the port is taken: Kestrel's own bind error names only the
    /// address. A probe (bound, then let go) just before Kestrel binds.
    /// </summary>
    internal void ThrowIfPortTaken()
    {
        if (_options.Port == 0)
        {
            return;
        }

        try
        {
            using var probe = new System.Net.Sockets.Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp) { DualMode = true };
            probe.Bind(new IPEndPoint(IPAddress.IPv6Any, _options.Port));
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
        {
            throw new InvalidOperationException($"The gRPC endpoint cannot take TCP port {_options.Port}: it is in use (another gRPC server, or a second Relay?). Stop that process, set Relay:Grpc:Port to a free port, or set Relay:Grpc:Enabled=false to serve no gRPC.", ex);
        }
        catch (SocketException)
        {
            // No IPv6 here: Kestrel binds IPv4 instead and reports what it finds.
        }
    }

    /// <inheritdoc />
    public void Configure(KestrelServerOptions options)
    {
        if (!Enabled)
        {
            return;
        }

        KestrelEndpointDefaults.Add(options, listen =>
        {
            if (Owns(listen.EndPoint))
            {
                listen.Protocols = HttpProtocols.Http2;
                _listen = listen;
            }
        });
    }
}

using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;

namespace Relay.ServiceDefaults.Tls;

/// <summary>
/// The internal listener (<c>Relay:InternalTls:Port</c>, every address): an endpoint default puts mutual TLS on it and on
/// nothing else, so public listeners never ask a browser for a certificate. <see cref="Address"/> adds it to the host's.
/// </summary>
internal sealed class InternalTlsListener(InternalTls tls) : IConfigureOptions<KestrelServerOptions>
{
    public void Configure(KestrelServerOptions options)
    {
        if (tls.Port is null)
        {
            return;
        }

        KestrelEndpointDefaults.Add(options, listen =>
        {
            if (tls.IsInternalListener(listen.EndPoint))
            {
                listen.UseHttps(tls.ListenerOptions());
            }
        });
    }

    /// <summary>
    /// Adds the internal listener's address to the host's (<c>--urls</c>) just before Kestrel binds them, as the gRPC
    /// port's is added, so configuring it in code does not make Kestrel drop those. Apart from the listener: the server
    /// it needs is made from Kestrel's options, which the listener configures.
    /// </summary>
    internal sealed class Address(InternalTls tls, IServer server) : IStartupFilter
    {
        /// <summary>Kestrel's own address when a host names none: kept, so adding the internal one does not take the HTTP port away.</summary>
        private const string KestrelDefaultAddress = "http://localhost:5000";

        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next)
        {
            if (tls.Port is { } port && server.Features.Get<IServerAddressesFeature>()?.Addresses is { IsReadOnly: false } addresses)
            {
                if (addresses.Count == 0)
                {
                    addresses.Add(KestrelDefaultAddress);
                }

                // http: Kestrel adds no TLS of its own; the endpoint default above adds the internal one.
                addresses.Add($"http://*:{port}");
            }

            return next;
        }
    }
}

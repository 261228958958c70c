using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Options;

namespace Relay.ServiceDefaults.Tls;

/// <summary>
/// Puts Relay's certificate on every listener <see cref="TlsListeners"/> names, however it was configured (<c>--urls</c>,
/// <c>ASPNETCORE_*</c>, <c>Kestrel:Endpoints</c>, code): as an endpoint default, applied before Kestrel adds its own
/// HTTPS for an <c>https://</c> URL, which it then skips. The handshake takes the certificate current at that moment.
/// </summary>
internal sealed class KestrelTlsSetup(TlsListeners listeners, ServerCertificate certificate) : IConfigureOptions<KestrelServerOptions>
{
    public void Configure(KestrelServerOptions options)
    {
        if (!listeners.Enabled)
        {
            return;
        }

        KestrelEndpointDefaults.Add(options, listen =>
        {
            if (listeners.ServesRelayCertificate(listen.EndPoint))
            {
                listen.UseHttps(new TlsHandshakeCallbackOptions { OnConnection = ServerCertificate.OnConnection, OnConnectionState = certificate });
            }
        });
    }
}

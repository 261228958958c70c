using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace Relay.Ingress.Grpc;

/// <summary>
/// Adds the gRPC endpoint's address to the host's. Startup filters run after the host put its URLs into the server's
/// addresses and before the server binds them, so the URLs stay and gRPC's joins them.
/// </summary>
internal sealed class GrpcAddress(GrpcEndpoint endpoint, IServer server) : IStartupFilter
{
    /// <summary>Kestrel's own address when a host names none: kept, so adding gRPC's does not take the HTTP port away.</summary>
    private const string KestrelDefaultAddress = "http://localhost:5000";

    public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next)
    {
        if (endpoint.Enabled && server.Features.Get<IServerAddressesFeature>()?.Addresses is { IsReadOnly: false } addresses)
        {
            if (addresses.Count == 0)
            {
                addresses.Add(KestrelDefaultAddress);
            }

            endpoint.ThrowIfPortTaken();
            addresses.Add(endpoint.Address);
        }

        return next;
    }
}

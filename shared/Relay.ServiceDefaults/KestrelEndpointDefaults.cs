using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Relay.ServiceDefaults;

/// <summary>
/// Kestrel keeps one endpoint-defaults action (<see cref="KestrelServerOptions.ConfigureEndpointDefaults"/>: the last
/// set wins); TLS and the gRPC endpoint both need one, so each adds its own here and every one runs, in order.
/// </summary>
public static class KestrelEndpointDefaults
{
    private static readonly ConditionalWeakTable<KestrelServerOptions, List<Action<ListenOptions>>> Actions = [];

    /// <summary>Adds <paramref name="configure"/> to what runs for every endpoint <paramref name="options"/> binds.</summary>
    public static void Add(KestrelServerOptions options, Action<ListenOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(configure);
        var actions = Actions.GetOrCreateValue(options);
        lock (actions)
        {
            actions.Add(configure);
            var all = actions.ToArray();
            options.ConfigureEndpointDefaults(listen =>
            {
                foreach (var action in all)
                {
                    action(listen);
                }
            });
        }
    }
}

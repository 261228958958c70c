using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Relay.ServiceDefaults;
using Relay.Standalone;

namespace Relay.Deploy.Tests;

/// <summary>What the hosts really do, read from the code: the paths they map and the address they listen on in a container.</summary>
internal static class HostFacts
{
    /// <summary>The port every image listens on (and the Kubernetes manifests name).</summary>
    public const int ContainerPort = 8080;

    private static readonly Lazy<IReadOnlySet<string>> DefaultsPaths = new(static () =>
    {
        var builder = WebApplication.CreateBuilder();
        builder.AddRelayServiceDefaults();
        using var app = builder.Build();
        app.MapRelayServiceDefaults();
        return PathsOf(app);
    });

    private static readonly Lazy<IReadOnlySet<string>> StandalonePaths = new(static () =>
    {
        using var app = StandaloneHost.Build(StandaloneHost.CreateBuilder([]));
        return PathsOf(app);
    });

    /// <summary>
    /// The paths <paramref name="host"/> maps that a probe may ask: the standalone host's from its built app; a
    /// service's from <c>MapRelayServiceDefaults</c>, when its Program.cs calls it (those hosts are top-level programs
    /// that cannot be built without running them).
    /// </summary>
    public static IReadOnlySet<string> ProbePaths(string host)
    {
        if (host == "Relay.Standalone")
        {
            return StandalonePaths.Value;
        }

        var program = File.ReadAllText(Repo.PathOf("services", host, "Program.cs"));
        return program.Contains(".MapRelayServiceDefaults()", StringComparison.Ordinal) ? DefaultsPaths.Value : new HashSet<string>();
    }

    private static HashSet<string> PathsOf(WebApplication app) =>
        ((IEndpointRouteBuilder)app).DataSources
            .SelectMany(static d => d.Endpoints)
            .OfType<RouteEndpoint>()
            .Select(static e => "/" + (e.RoutePattern.RawText ?? "").TrimStart('/'))
            .ToHashSet(StringComparer.Ordinal);

    /// <summary>
    /// The addresses a host listens on in a container with <paramref name="environment"/>, as ASP.NET Core reads them:
    /// ASPNETCORE_URLS first, then ASPNETCORE_HTTP_PORTS (any interface); the standalone host binds
    /// <see cref="StandaloneHost.DefaultUrl"/> unless URLs are configured; other hosts fall back to the runtime image's
    /// ASPNETCORE_HTTP_PORTS=8080 (which an image that does not say its port inherits). Ingress nodes and the
    /// standalone host add MQTT's TCP port (<c>Relay:Mqtt:Port</c>, 1883) unless <c>Relay:Mqtt:Enabled</c> is false, and
    /// gRPC's (<c>Relay:Grpc:Port</c>, 50051) unless <c>Relay:Grpc:Enabled</c> is false.
    /// </summary>
    public static IReadOnlyList<(string Host, int Port)> Listens(string host, IReadOnlyDictionary<string, string> environment)
    {
        var listens = HttpListens(host, environment).ToList();

        // Ingress nodes (and the standalone host, one) also serve MQTT on TCP, on every interface, unless turned off.
        if (host is "Relay.Ingress" or "Relay.Standalone"
            && !(environment.TryGetValue("Relay__Mqtt__Enabled", out var enabled) && string.Equals(enabled, "false", StringComparison.OrdinalIgnoreCase)))
        {
            var port = environment.TryGetValue("Relay__Mqtt__Port", out var configured) ? int.Parse(configured, System.Globalization.CultureInfo.InvariantCulture) : Relay.Ingress.Mqtt.MqttOptions.DefaultPort;
            listens.Add(("*", port));
        }

        // And gRPC on a port of its own (Relay:Grpc:Port, 50051; -1 none), on every interface, unless turned off.
        if (host is "Relay.Ingress" or "Relay.Standalone"
            && !(environment.TryGetValue("Relay__Grpc__Enabled", out var grpc) && string.Equals(grpc, "false", StringComparison.OrdinalIgnoreCase)))
        {
            var port = environment.TryGetValue("Relay__Grpc__Port", out var configured) ? int.Parse(configured, System.Globalization.CultureInfo.InvariantCulture) : Relay.Ingress.Grpc.GrpcOptions.DefaultPort;
            if (port >= 0)
            {
                listens.Add(("*", port));
            }
        }

        return listens;
    }

    private static IReadOnlyList<(string Host, int Port)> HttpListens(string host, IReadOnlyDictionary<string, string> environment)
    {
        if (environment.TryGetValue("ASPNETCORE_URLS", out var urls))
        {
            return ParseUrls(urls);
        }

        if (host == "Relay.Standalone")
        {
            return ParseUrls(StandaloneHost.DefaultUrl);
        }

        var ports = environment.TryGetValue("ASPNETCORE_HTTP_PORTS", out var p) ? p : "8080";
        return ports.Split([';', ','], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(static s => ("*", int.Parse(s, System.Globalization.CultureInfo.InvariantCulture)))
            .ToList();
    }

    private static List<(string Host, int Port)> ParseUrls(string urls) =>
        urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(static u =>
            {
                // Kestrel's wildcards (+, *) are not valid URI hosts; read them as "any interface".
                var wildcard = u.Replace("://+", "://any-interface", StringComparison.Ordinal).Replace("://*", "://any-interface", StringComparison.Ordinal);
                var uri = new Uri(wildcard);
                return (uri.Host == "any-interface" ? "*" : uri.Host, uri.Port);
            })
            .ToList();

    /// <summary>Whether a listen host is reachable from outside the container.</summary>
    public static bool Reachable(string host) => host is not ("localhost" or "127.0.0.1" or "[::1]" or "::1");
}

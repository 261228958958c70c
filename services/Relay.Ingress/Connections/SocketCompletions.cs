using Microsoft.Extensions.Configuration;

namespace Relay.Ingress.Connections;

/// <summary>
/// Where the runtime runs a socket's completions (<c>Relay:Ingress:InlineSocketCompletions</c>): on its socket event
/// threads, one per core, where the bytes arrived (on), or handed to the thread pool (off, .NET's default). A realtime
/// connection's receive loop does all its work without blocking (parse, route, fan out into send buffers), so running
/// it where its input arrived saves a thread-pool dispatch and a worker wake-up per burst of input, as NATS's read
/// loop handles a read where it lands (about 30% of the server's CPU per publish in <c>publish-ws-1</c>,
/// docs/benchmarks.md). Kestrel's own connections still hand their requests to its I/O queues.
/// </summary>
/// <remarks>
/// The runtime reads <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS</c> once, the first time a socket waits in the
/// process, so <see cref="Apply"/> runs when the host is built, before anything opens a socket. A value already in the
/// environment is the operator's and wins over the setting.
/// </remarks>
public static class SocketCompletions
{
    /// <summary>The runtime's switch.</summary>
    public const string Variable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>The runtime's override of the number of socket event threads.</summary>
    private const string ThreadCountVariable = "DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT";

    /// <summary>Sets the runtime's switch from <c>Relay:Ingress:InlineSocketCompletions</c> unless the environment already has it.</summary>
    public static void Apply(IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        if (Environment.GetEnvironmentVariable(Variable) is not null)
        {
            return;
        }

        var key = IngressOptions.SectionName + ":" + nameof(IngressOptions.InlineSocketCompletions);
        if (configuration.GetValue(key, IngressOptions.DefaultInlineSocketCompletions))
        {
            Environment.SetEnvironmentVariable(Variable, "1");
        }
    }

    /// <summary>Whether completions run inline in this process (as the runtime reads the switch).</summary>
    public static bool Inline => Environment.GetEnvironmentVariable(Variable) == "1";

    /// <summary>The runtime's socket event threads: one per core inline, else one per 30 cores (x64), unless overridden.</summary>
    public static int EventThreads =>
        int.TryParse(Environment.GetEnvironmentVariable(ThreadCountVariable), out var count) && count > 0 ? count
        : Inline ? Environment.ProcessorCount
        : Math.Max(1, (int)Math.Round(Environment.ProcessorCount / 30.0));
}

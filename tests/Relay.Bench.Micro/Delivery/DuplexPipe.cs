using System.IO.Pipelines;

namespace Relay.Bench.Micro.Delivery;

/// <summary>A connection's transport: the input the rig writes and the output it reads.</summary>
internal sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
{
    public PipeReader Input { get; } = input;

    public PipeWriter Output { get; } = output;
}

using Microsoft.Extensions.Options;

namespace Relay.Ingress.Grpc;

internal sealed class GrpcOptionsValidator(IOptions<IngressOptions> ingress) : IValidateOptions<GrpcOptions>
{
    /// <summary>A publish's channel, name, id and the protobuf framing around a payload of MaxMessageBytes.</summary>
    private const int MessageOverheadBytes = 1024;

    /// <summary>The largest message gRPC's framing can announce is 4 GiB; more than 64 MiB is not a message but a stream.</summary>
    private const int MaxReceiveMessageBytesCeiling = 64 * 1024 * 1024;

    public ValidateOptionsResult Validate(string? name, GrpcOptions options)
    {
        var failures = new List<string>();
        if (options.Port is < -1 or > 65535)
        {
            failures.Add($"Relay:Grpc:Port is {options.Port}; set a TCP port between 1 and 65535 ({GrpcOptions.DefaultPort} by default), 0 for any free port, -1 for no plain gRPC port (gRPC-Web stays on the HTTP port), or Relay:Grpc:Enabled=false to serve no gRPC.");
        }

        var smallest = ingress.Value.MaxMessageBytes + MessageOverheadBytes;
        if (options.MaxReceiveMessageBytes < smallest || options.MaxReceiveMessageBytes > MaxReceiveMessageBytesCeiling)
        {
            failures.Add($"Relay:Grpc:MaxReceiveMessageBytes is {options.MaxReceiveMessageBytes}; set it between {smallest} (Relay:Ingress:MaxMessageBytes plus {MessageOverheadBytes} for the channel, name and framing: a message Relay accepts must fit) and {MaxReceiveMessageBytesCeiling}.");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

using Relay.Core.Messages;
using Relay.Grpc.V1;

namespace Relay.Ingress.Grpc;

/// <summary>One item of a Connect stream's send queue: a delivery (made a frame as it is written) or a reply's frame.</summary>
internal readonly record struct GrpcOutbound(RelayMessage? Message, ServerFrame? Frame, int Bytes)
{
    /// <summary>What a Message frame adds around its payload and channel (epoch, seq, ids, framing), counted in the budget.</summary>
    public const int MessageOverheadBytes = 64;

    /// <summary>The bytes an item stands for in the connection's send budget (a static lambda: one delegate for every connection).</summary>
    public static readonly Func<GrpcOutbound, int> Size = static item => item.Bytes;

    public static GrpcOutbound Of(RelayMessage message) =>
        new(message, null, message.Data.Length + message.Channel.Length + (message.Name?.Length ?? 0) + MessageOverheadBytes);

    public static GrpcOutbound Of(ServerFrame frame) => new(null, frame, frame.CalculateSize());
}

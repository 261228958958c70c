namespace Relay.Ingress.Grpc;

/// <summary>Options of the gRPC API (<c>protos/relay/v1/relay.proto</c>), bound from <c>Relay:Grpc</c>.</summary>
public sealed class GrpcOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "Relay:Grpc";

    /// <summary>
    /// The port gRPC clients are given by convention in examples (gRPC's own docs use 50051), free of HTTP's 8080 and
    /// MQTT's 1883; plain gRPC needs a port of its own, since HTTP/2 without TLS can only be spoken there by prior knowledge.
    /// </summary>
    public const int DefaultPort = 50051;

    /// <summary>
    /// Default largest gRPC message a client may send: a 64 KiB payload with its channel, name and id, and room for a
    /// batch's framing. A larger one ends the call (RESOURCE_EXHAUSTED); a payload over Relay:Ingress:MaxMessageBytes
    /// inside a smaller message is refused with 41300 and the stream goes on.
    /// </summary>
    public const int DefaultMaxReceiveMessageBytes = 1024 * 1024;

    /// <summary>Whether the node serves gRPC: on <see cref="Port"/> (HTTP/2) and gRPC-Web on the HTTP port.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>The TCP port of the HTTP/2-only gRPC endpoint, on every address; 0 picks a free one (tests); -1 serves no plain gRPC (gRPC-Web stays).</summary>
    public int Port { get; set; } = DefaultPort;

    /// <summary>The largest gRPC message (one ClientFrame or unary request) a client may send, in bytes.</summary>
    public int MaxReceiveMessageBytes { get; set; } = DefaultMaxReceiveMessageBytes;

    /// <summary>Whether gRPC-Web (for browsers, over HTTP/1.1) is served on the node's HTTP port.</summary>
    public bool Web { get; set; } = true;

    /// <summary>Whether the server reflection service is served (grpcurl and other tools list the API with it).</summary>
    public bool Reflection { get; set; } = true;
}

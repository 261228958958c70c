using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Relay.Core.Protocol;

namespace Relay.Ingress.Grpc;

/// <summary>
/// The protocol's error codes as gRPC statuses (docs/grpc.md, "Errors"): the status code a gRPC client branches on,
/// and the Relay code itself twice, as a google.rpc.Status detail (ErrorInfo, domain <c>relay.v1</c>, metadata
/// <c>code</c>) and as the trailer <c>relay-error-code</c> for clients that read no details.
/// </summary>
internal static class GrpcErrors
{
    /// <summary>The ErrorInfo domain.</summary>
    public const string Domain = "relay.v1";

    /// <summary>The trailer that carries the protocol's numeric code.</summary>
    public const string CodeTrailer = "relay-error-code";

    /// <summary>The gRPC status for a Relay error code.</summary>
    public static StatusCode StatusFor(int code) => code switch
    {
        ErrorCodes.BadRequest or ErrorCodes.InvalidChannel => StatusCode.InvalidArgument,
        ErrorCodes.NoCredentials or ErrorCodes.InvalidCredentials or ErrorCodes.TokenExpired => StatusCode.Unauthenticated,
        ErrorCodes.Forbidden => StatusCode.PermissionDenied,
        ErrorCodes.NotFound => StatusCode.NotFound,
        ErrorCodes.MessageTooLarge or ErrorCodes.RateLimited => StatusCode.ResourceExhausted,
        ErrorCodes.Unavailable or ErrorCodes.SlowConsumer => StatusCode.Unavailable,
        _ when code is >= 40000 and < 50000 => StatusCode.FailedPrecondition,
        _ => StatusCode.Internal,
    };

    /// <summary>The exception that ends a call with <paramref name="error"/>.</summary>
    public static RpcException ToRpcException(RelayError error)
    {
        var code = error.Code.ToString(CultureInfo.InvariantCulture);
        var status = new Google.Rpc.Status
        {
            Code = (int)StatusFor(error.Code),
            Message = error.Message,
            Details =
            {
                Any.Pack(new ErrorInfo
                {
                    Reason = "RELAY_" + code,
                    Domain = Domain,
                    Metadata = { ["code"] = code },
                }),
            },
        };
        var exception = status.ToRpcException();
        exception.Trailers.Add(CodeTrailer, code);
        return exception;
    }

    /// <summary>An error frame for a Connect stream.</summary>
    public static Relay.Grpc.V1.Error ToFrame(RelayError error, string? channel = null) =>
        new() { Code = error.Code, Message = error.Message, Channel = channel ?? string.Empty };
}

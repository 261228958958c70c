using Google.Protobuf;
using Grpc.Core;
using Relay.Core.Protocol;
using Relay.Grpc.V1;
using HistoryRequest = Relay.Grpc.V1.HistoryRequest;
using PresenceRequest = Relay.Grpc.V1.PresenceRequest;
using PublishRequest = Relay.Grpc.V1.PublishRequest;

namespace Relay.Ingress.Grpc;

/// <summary>
/// Binds <c>relay.v1.Realtime</c> as the generated code does, with request marshallers that turn a message which is not
/// valid protobuf (a bad varint or length, a string that is not UTF-8) into INVALID_ARGUMENT with 40000. With the
/// generated ones the parser's exception escaped the framework's reading of a unary request before any of Relay's code
/// ran: an error logged and the call ended UNKNOWN (found by <c>GrpcFuzzTests</c>); on a Connect stream it now ends the
/// call the same way, through the read loop's handling of framework refusals. Grpc.AspNetCore finds this class through
/// <see cref="BindServiceMethodAttribute"/> on <see cref="GrpcService"/>, and reflection its <see cref="Descriptor"/>.
/// </summary>
internal static class GrpcBinding
{
    private static readonly string ServiceName = Relay.Grpc.V1.Realtime.Descriptor.FullName;

    /// <summary>The service's descriptor, for server reflection.</summary>
    public static Google.Protobuf.Reflection.ServiceDescriptor Descriptor => Relay.Grpc.V1.Realtime.Descriptor;

    /// <summary>Called by Grpc.AspNetCore's binder (the handlers are found on the service type by name, as for generated bindings).</summary>
    public static void BindService(ServiceBinderBase binder, Relay.Grpc.V1.Realtime.RealtimeBase? service)
    {
        ArgumentNullException.ThrowIfNull(binder);
        binder.AddMethod(Method<ClientFrame, ServerFrame>(MethodType.DuplexStreaming, "Connect", ClientFrame.Parser), (DuplexStreamingServerMethod<ClientFrame, ServerFrame>?)null);
        binder.AddMethod(Method<PublishRequest, PublishResult>(MethodType.Unary, "Publish", PublishRequest.Parser), (UnaryServerMethod<PublishRequest, PublishResult>?)null);
        binder.AddMethod(Method<HistoryRequest, HistoryResult>(MethodType.Unary, "History", HistoryRequest.Parser), (UnaryServerMethod<HistoryRequest, HistoryResult>?)null);
        binder.AddMethod(Method<PresenceRequest, PresenceResult>(MethodType.Unary, "Presence", PresenceRequest.Parser), (UnaryServerMethod<PresenceRequest, PresenceResult>?)null);
        binder.AddMethod(Method<ChannelsRequest, ChannelsResult>(MethodType.Unary, "Channels", ChannelsRequest.Parser), (UnaryServerMethod<ChannelsRequest, ChannelsResult>?)null);
    }

    private static Method<TRequest, TResponse> Method<TRequest, TResponse>(MethodType type, string name, MessageParser<TRequest> parser)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse> =>
        new(type, ServiceName, name, Marshallers.Create<TRequest>(Serialize, context => Parse(context, parser)),
            Marshallers.Create<TResponse>(Serialize, static _ => throw new NotSupportedException("the server writes responses, never reads them")));

    private static void Serialize<T>(T message, SerializationContext context)
        where T : IMessage<T>
    {
        context.SetPayloadLength(message.CalculateSize());
        message.WriteTo(context.GetBufferWriter());
        context.Complete();
    }

    private static T Parse<T>(DeserializationContext context, MessageParser<T> parser)
        where T : IMessage<T>
    {
        try
        {
            return parser.ParseFrom(context.PayloadAsReadOnlySequence());
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw GrpcErrors.ToRpcException(RelayError.BadRequest($"the request is not a valid relay.v1.{typeof(T).Name} ({ex.Message})"));
        }
    }
}

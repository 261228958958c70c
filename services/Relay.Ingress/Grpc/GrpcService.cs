using System.Diagnostics;
using Grpc.Core;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Relay.Auth.Verification;
using Relay.Bus.Routing;
using Relay.Core.Auth;
using Relay.Core.Channels;
using Relay.Core.Diagnostics;
using Relay.Core.Messages;
using Relay.Core.Protocol;
using Relay.Grpc.V1;
using HistoryRequest = Relay.Grpc.V1.HistoryRequest;
using PresenceRequest = Relay.Grpc.V1.PresenceRequest;
using PublishRequest = Relay.Grpc.V1.PublishRequest;

namespace Relay.Ingress.Grpc;

/// <summary>
/// <c>relay.v1.Realtime</c>: the Connect stream (a <see cref="GrpcConnection"/> each) and the unary calls, which answer
/// as the HTTP API does (the same checks and codes). A call whose credentials fail ends UNAUTHENTICATED before anything
/// else; every error carries the protocol's code (<see cref="GrpcErrors"/>).
/// </summary>
[BindServiceMethod(typeof(GrpcBinding), nameof(GrpcBinding.BindService))]
internal sealed class GrpcService(IngressNode node, GrpcStreams streams, ILogger<GrpcConnection> logger) : Relay.Grpc.V1.Realtime.RealtimeBase
{
    public override async Task Connect(IAsyncStreamReader<ClientFrame> requestStream, IServerStreamWriter<ServerFrame> responseStream, ServerCallContext context)
    {
        var keysVersion = node.Authenticator.KeysVersion;
        var principal = Authenticate(context);

        // A Connect stream is a connection of its app (Relay:Ingress:AppLimits); the HTTP/2 connection it runs on is what
        // the per-address limits count.
        if (await node.AppLimits.TryOpenAsync(principal.AppId, context.CancellationToken).ConfigureAwait(false) is { } overLimit)
        {
            throw GrpcErrors.ToRpcException(overLimit);
        }

        try
        {
            await ConnectAsync(requestStream, responseStream, context, keysVersion, principal).ConfigureAwait(false);
        }
        finally
        {
            node.AppLimits.Closed(principal.AppId);
        }
    }

    private async Task ConnectAsync(IAsyncStreamReader<ClientFrame> requestStream, IServerStreamWriter<ServerFrame> responseStream, ServerCallContext context, long keysVersion, RelayPrincipal principal)
    {
        var connection = new GrpcConnection(node, principal, keysVersion, context.GetHttpContext(), logger);

        // A stopping node tells its streams to go before Kestrel stops (GrpcStreams). A stream counts as open until
        // Kestrel has finished its response (its last frame and status), not only until this method returns.
        streams.Add(connection);
        context.GetHttpContext().Response.OnCompleted(static state =>
        {
            var (streams, connection) = ((GrpcStreams, GrpcConnection))state;
            streams.Remove(connection);
            return Task.CompletedTask;
        }, (streams, connection));
        await connection.RunAsync(requestStream, responseStream, context.CancellationToken).ConfigureAwait(false);
    }

    public override async Task<PublishResult> Publish(PublishRequest request, ServerCallContext context)
    {
        var principal = Authenticate(context);
        var channel = Authorize(principal, request.Channel, Operations.Publish);

        // Token holders are clients; a namespace may keep publishing to servers holding a key (as over HTTP).
        if (principal.ExpiresAt is not null && !node.Namespaces.For(channel).ClientPublish)
        {
            throw GrpcErrors.ToRpcException(new RelayError(ErrorCodes.Forbidden, $"clients may not publish in namespace '{ChannelName.NamespaceOf(channel)}'; publish from your server with a key"));
        }

        if (request.Messages.Count is 0 or > ClientFrameParser.MaxBatch)
        {
            throw GrpcErrors.ToRpcException(RelayError.BadRequest($"a publish carries 1 to {ClientFrameParser.MaxBatch} messages (it had {request.Messages.Count})"));
        }

        var items = new List<PublishItem>(request.Messages.Count);
        foreach (var message in request.Messages)
        {
            items.Add(Call(() => ToItem(message, node.Options.MaxMessageBytes)));
        }

        if (node.AppLimits.TryPublish(principal.AppId, items.Count) is { } overAppRate)
        {
            throw GrpcErrors.ToRpcException(overAppRate);
        }

        using var activity = RelayTracing.Start(RelayTracing.IngressReceive, ActivityKind.Server, null, channel);
        var reply = await node.Bus.SendToRoutingAsync(new Bus.Routing.PublishRequest(principal.AppId, channel, items, principal.ClientId, activity?.Id), context.CancellationToken).ConfigureAwait(false);
        var published = Call(() => GrpcConnection.Expect<PublishReply>(reply));
        node.Metrics.Published(items.Count);
        return new PublishResult { Channel = channel, Seqs = { published.Seqs } };
    }

    public override async Task<HistoryResult> History(HistoryRequest request, ServerCallContext context)
    {
        var principal = Authenticate(context);
        var channel = Authorize(principal, request.Channel, Operations.History);
        var limit = Call(() => GrpcFrames.HistoryLimit(request));
        var pageBytes = node.Options.HistoryPageBytes;
        var reply = await node.Bus.SendToRoutingAsync(new Bus.Routing.HistoryRequest(principal.AppId, channel, limit, request.HasBefore ? request.Before : null, MaxBytes: pageBytes), context.CancellationToken).ConfigureAwait(false);
        return GrpcFrames.ToHistory(channel, Call(() => GrpcConnection.Expect<HistoryReply>(reply)), pageBytes);
    }

    public override async Task<PresenceResult> Presence(PresenceRequest request, ServerCallContext context)
    {
        var principal = Authenticate(context);
        var channel = Authorize(principal, request.Channel, Operations.None);
        if (request.Action is not ("" or "get"))
        {
            throw GrpcErrors.ToRpcException(RelayError.BadRequest("the unary Presence answers 'get' only: enter, update and leave need a Connect stream (a member lives as long as its connection)"));
        }

        if ((principal.Capabilities.OperationsFor(channel) & (Operations.Presence | Operations.Subscribe)) == Operations.None)
        {
            throw GrpcErrors.ToRpcException(RelayError.Forbidden("presence", channel));
        }

        var reply = await node.Bus.SendToRoutingAsync(new PresenceGetRequest(principal.AppId, channel), context.CancellationToken).ConfigureAwait(false);
        return GrpcFrames.ToMembers(channel, Call(() => GrpcConnection.Expect<PresenceReply>(reply)).Members);
    }

    public override async Task<ChannelsResult> Channels(ChannelsRequest request, ServerCallContext context)
    {
        var principal = Authenticate(context);
        var all = await node.Bus.QueryChannelsAsync(principal.AppId, request.Prefix.Length == 0 ? null : request.Prefix, context.CancellationToken).ConfigureAwait(false);
        var result = new ChannelsResult();
        foreach (var channel in all)
        {
            // Only channels these credentials may do something with are listed.
            if (principal.Capabilities.OperationsFor(channel.Channel) != Operations.None)
            {
                result.Channels.Add(new ChannelInfo { Channel = channel.Channel, Subscribers = channel.Subscribers });
            }
        }

        return result;
    }

    /// <summary>A message to publish, checked as the WebSocket's: data required, the idempotency id, the size.</summary>
    internal static PublishItem ToItem(PublishMessage message, int maxMessageBytes)
    {
        var id = GrpcFrames.IdOf(message);
        var (data, isJson) = GrpcFrames.FromData(message.Data, "data");
        var size = data.Length + message.Name.Length;
        if (size > maxMessageBytes)
        {
            throw new RelayException(ErrorCodes.MessageTooLarge, $"message of {size} bytes is larger than maxMessageBytes ({maxMessageBytes})");
        }

        return new PublishItem(message.Name.Length == 0 ? null : message.Name, data, isJson, id);
    }

    private RelayPrincipal Authenticate(ServerCallContext context)
    {
        var result = GrpcCredentials.Authenticate(node.Authenticator, context);
        return result.Succeeded ? result.Principal : throw GrpcErrors.ToRpcException(result.Error);
    }

    private static string Authorize(RelayPrincipal principal, string channel, Operations operation)
    {
        if (string.IsNullOrEmpty(channel))
        {
            throw GrpcErrors.ToRpcException(RelayError.BadRequest("missing field 'channel'"));
        }

        if (!ChannelName.IsValidName(channel, out var invalid))
        {
            throw GrpcErrors.ToRpcException(new RelayError(ErrorCodes.InvalidChannel, invalid));
        }

        return principal.Capabilities.Allows(channel, operation)
            ? channel
            : throw GrpcErrors.ToRpcException(RelayError.Forbidden(operation.ToString().ToLowerInvariant(), channel));
    }

    // A check that throws the protocol's error, turned into the call's status.
    private static T Call<T>(Func<T> check)
    {
        try
        {
            return check();
        }
        catch (RelayException ex)
        {
            throw GrpcErrors.ToRpcException(ex.Error);
        }
    }
}

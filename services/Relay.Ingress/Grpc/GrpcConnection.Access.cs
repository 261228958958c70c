using Relay.Auth.Verification;
using Relay.Bus.Routing;
using Relay.Core.Auth;
using Relay.Core.Protocol;
using Relay.Grpc.V1;
using Relay.Ingress.Subscriptions;

namespace Relay.Ingress.Grpc;

/// <summary>
/// What the stream may do, kept true over its life as a WebSocket connection's is: an <c>auth</c> frame or a key
/// change that takes access away drops each subscription and presence entry no longer allowed, each with a 40300 error
/// frame naming its channel; a removed key disconnects with 40102. State changes under <c>lock (this)</c>, never held
/// across a wait.
/// </summary>
internal sealed partial class GrpcConnection
{
    /// <inheritdoc />
    public void CheckCredentials(long keysVersion)
    {
        if (Volatile.Read(ref _keysVersion) == keysVersion || Volatile.Read(ref _closing) != 0)
        {
            return;
        }

        Relay.Auth.Verification.AuthResult result;
        var changed = false;
        var principal = _principal;
        lock (this)
        {
            if (_keysVersion == keysVersion)
            {
                return;
            }

            result = _authenticator.Recheck(_principal);
            if (result.Succeeded && !ReferenceEquals(result.Principal, _principal))
            {
                _principal = result.Principal;
                changed = true;
            }

            Volatile.Write(ref _keysVersion, keysVersion);
        }

        if (!result.Succeeded)
        {
            LogKeyRevoked(_logger, ConnectionId, principal.AppId, principal.KeyId);
            Disconnect(result.Error, reconnect: false, dropQueued: true);
        }
        else if (changed)
        {
            _ = DropForbiddenAsync();
        }
    }

    /// <summary>Drops every subscription and presence entry the current capabilities do not allow.</summary>
    private async Task DropForbiddenAsync()
    {
        List<Subscription>? dropped = null;
        List<string>? left = null;
        lock (this)
        {
            var capabilities = _principal.Capabilities;
            foreach (var (channel, subscription) in _subscriptions)
            {
                if (!capabilities.Allows(channel, Operations.Subscribe))
                {
                    (dropped ??= []).Add(subscription);
                }
            }

            foreach (var subscription in dropped ?? [])
            {
                _subscriptions.Remove(subscription.Channel);
            }

            foreach (var channel in _presence ?? [])
            {
                if (!capabilities.Allows(channel, Operations.Presence))
                {
                    (left ??= []).Add(channel);
                }
            }

            foreach (var channel in left ?? [])
            {
                _presence!.Remove(channel);
            }
        }

        try
        {
            foreach (var subscription in dropped ?? [])
            {
                await _node.RemoveSubscriptionAsync(subscription).ConfigureAwait(false);
                ReplyDropped("subscribe", subscription.Channel);
            }

            foreach (var channel in left ?? [])
            {
                await LeaveAsync(channel, retry: false).ConfigureAwait(false);
                ReplyDropped("presence", channel);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogRequestFailed(_logger, ex, ConnectionId);
        }
    }

    /// <summary>Records that the stream entered <paramref name="channel"/>'s presence (or left it); true when that changed its set.</summary>
    private bool TrackPresence(string channel, bool present)
    {
        lock (this)
        {
            return present
                ? (_presence ??= new HashSet<string>(StringComparer.Ordinal)).Add(channel)
                : _presence?.Remove(channel) == true;
        }
    }

    /// <summary>After the read loop: the subscriptions go, every channel entered is left, and the queue ends.</summary>
    private async Task CloseAsync()
    {
        if (Interlocked.Exchange(ref _closing, 1) == 0)
        {
            _queue.Complete();
        }

        Subscription[] subscriptions;
        string[] entered;
        lock (this)
        {
            subscriptions = [.. _subscriptions.Values];
            _subscriptions.Clear();
            entered = _presence is { Count: > 0 } ? [.. _presence] : [];
            _presence?.Clear();
        }

        try
        {
            foreach (var subscription in subscriptions)
            {
                await _node.RemoveSubscriptionAsync(subscription).ConfigureAwait(false);
            }

            foreach (var channel in entered)
            {
                await LeaveAsync(channel, retry: true).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogRequestFailed(_logger, ex, ConnectionId);
        }
    }

    private async ValueTask LeaveAsync(string channel, bool retry)
    {
        if (_principal.ClientId is not { } clientId)
        {
            return;
        }

        // A leave the bus did not take is sent again by the node until it goes through (as a WebSocket's close does).
        var leave = new Bus.Routing.PresenceRequest(App, channel, "leave", clientId, ConnectionId, default, _node.NodeId);
        try
        {
            if (await _node.Bus.SendToRoutingAsync(leave, CancellationToken.None).ConfigureAwait(false) is ErrorReply { Error.Code: ErrorCodes.Unavailable or ErrorCodes.Internal } && retry)
            {
                _node.PresenceLeaves.Retry(leave);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException && retry)
        {
            LogRequestFailed(_logger, ex, ConnectionId);
            _node.PresenceLeaves.Retry(leave);
        }
    }

    // An error that answers no request: no ref, and the channel named so a client can tell which one went.
    private void ReplyDropped(string operation, string channel) =>
        Enqueue(new ServerFrame { Error = GrpcErrors.ToFrame(new RelayError(ErrorCodes.Forbidden, $"the credentials no longer allow '{operation}' on channel '{channel}', so it was dropped"), channel) });
}

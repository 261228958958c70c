using Microsoft.Extensions.Logging;
using Relay.Auth.Verification;
using Relay.Bus.Routing;
using Relay.Core.Auth;
using Relay.Core.Protocol;
using Relay.Ingress.Subscriptions;

namespace Relay.Ingress.Realtime;

/// <summary>
/// What the connection may do, kept true over its life: an in-band <c>auth</c> or a key change (seen by the node's
/// once-a-second loop) that takes access away drops each subscription and presence entry no longer allowed, each with a
/// 40300 <c>error</c> naming its channel (no <c>ref</c>: it answers no request); a removed key disconnects with 40102.
/// The connection's subscriptions, presence entries and principal change under <c>lock (this)</c>, so the receive
/// loop and the node's loop can both change them; the lock is never held across a wait.
/// </summary>
internal sealed partial class RealtimeConnection
{
    // The key set version _principal was last checked against. -1: never, so the first sweep checks it (a key may have
    // gone between the check at the upgrade and the connection's registration).
    private long _keysVersion = -1;

    /// <summary>Called once a second by the node with the key set's version: checks the principal again when it moved.</summary>
    public void CheckCredentials(long keysVersion)
    {
        if (Volatile.Read(ref _keysVersion) == keysVersion || Volatile.Read(ref _closing) != 0)
        {
            return;
        }

        AuthResult result;
        var changed = false;
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
            LogKeyRevoked(_logger, ConnectionId, _principal.AppId, _principal.KeyId);
            Disconnect(result.Error, reconnect: false, dropQueued: true);
        }
        else if (changed)
        {
            _ = DropForbiddenAsync();
        }
    }

    /// <summary>
    /// In-band <c>auth</c>: takes the new principal (checked against the keys at <paramref name="keysVersion"/>, read before
    /// the token was), answers <c>ok</c>, then drops what the new capabilities no longer allow.
    /// </summary>
    private async ValueTask RenewAsync(byte[]? reference, RelayPrincipal principal, long keysVersion)
    {
        lock (this)
        {
            _principal = principal;
            Volatile.Write(ref _keysVersion, keysVersion);
        }

        Reply(reference, "ok", static (writer, expiresAt) =>
        {
            if (expiresAt is { } at)
            {
                writer.WriteNumber("expiresAt"u8, at.ToUnixTimeMilliseconds());
            }
        }, principal.ExpiresAt);
        await DropForbiddenAsync().ConfigureAwait(false);
    }

    /// <summary>Drops every subscription and presence entry the current capabilities do not allow.</summary>
    private async Task DropForbiddenAsync()
    {
        List<Subscription>? dropped = null;
        List<string>? left = null;
        lock (this)
        {
            var capabilities = _principal.Capabilities;
            foreach (var subscription in _subscriptions.Items)
            {
                if (!capabilities.Allows(subscription.Channel, Operations.Subscribe))
                {
                    (dropped ??= []).Add(subscription);
                }
            }

            foreach (var subscription in dropped ?? [])
            {
                _subscriptions.Remove(subscription.Channel, out _);
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
                await LeavePresenceAsync(channel).ConfigureAwait(false);
                ReplyDropped("presence", channel);
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogRequestFailed(_logger, ex, ConnectionId);
        }
    }

    /// <summary>Takes the subscription to <paramref name="channel"/> out of the connection's list, if there is one.</summary>
    private bool UntrackSubscription(string channel, out Subscription removed)
    {
        lock (this)
        {
            return _subscriptions.Remove(channel, out removed);
        }
    }

    /// <summary>
    /// Keeps a subscription that just went live, unless the capabilities changed while it was being set up and no longer
    /// allow it: then it is dropped like any other (its <c>ok</c> has gone out already).
    /// </summary>
    private async ValueTask TrackSubscriptionAsync(Subscription subscription)
    {
        bool allowed;
        lock (this)
        {
            allowed = _principal.Capabilities.Allows(subscription.Channel, Operations.Subscribe);
            if (allowed)
            {
                _subscriptions.Add(subscription);
            }
        }

        if (!allowed)
        {
            await _node.RemoveSubscriptionAsync(subscription).ConfigureAwait(false);
            ReplyDropped("subscribe", subscription.Channel);
        }
    }

    /// <summary>Every subscription, taken out of the connection's list (it is closing).</summary>
    private Subscription[] UntrackAllSubscriptions()
    {
        lock (this)
        {
            var all = _subscriptions.Items.ToArray();
            _subscriptions.Clear();
            return all;
        }
    }

    /// <summary>Records that the connection entered <paramref name="channel"/>'s presence (or left it); true when that changed its set.</summary>
    private bool TrackPresence(string channel, bool present)
    {
        lock (this)
        {
            return present
                ? (_presence ??= new HashSet<string>(StringComparer.Ordinal)).Add(channel)
                : _presence?.Remove(channel) == true;
        }
    }

    /// <summary>Every channel whose presence the connection entered, taken out of its set (it is closing).</summary>
    private string[] UntrackAllPresence()
    {
        lock (this)
        {
            var all = _presence is { Count: > 0 } ? [.. _presence] : Array.Empty<string>();
            _presence?.Clear();
            return all;
        }
    }

    /// <summary>
    /// After an <c>enter</c> or <c>update</c> reached routing: when the capabilities changed meanwhile and no longer allow
    /// presence there, leave again, so no member outlives its right to be one (the drop may have left before the enter arrived).
    /// </summary>
    private async ValueTask RecheckPresenceAsync(string channel)
    {
        if (_principal.Capabilities.Allows(channel, Operations.Presence))
        {
            return;
        }

        bool tracked;
        lock (this)
        {
            tracked = _presence?.Remove(channel) == true;
        }

        await LeavePresenceAsync(channel).ConfigureAwait(false);
        if (tracked)
        {
            ReplyDropped("presence", channel);
        }
    }

    private async ValueTask LeavePresenceAsync(string channel)
    {
        if (_principal.ClientId is { } clientId)
        {
            await _node.Bus.SendToRoutingAsync(new PresenceRequest(App, channel, "leave", clientId, ConnectionId, default, _node.NodeId), CancellationToken.None).ConfigureAwait(false);
        }
    }

    // An error that answers no request: no ref, and the channel as a field of its own so a client can tell which one went.
    private void ReplyDropped(string operation, string channel) =>
        Reply(null, "error", static (writer, state) =>
        {
            writer.WriteNumber("code"u8, ErrorCodes.Forbidden);
            writer.WriteString("message"u8, $"the credentials no longer allow '{state.operation}' on channel '{state.channel}', so it was dropped");
            writer.WriteString("channel"u8, state.channel);
        }, (operation, channel));

    [LoggerMessage(EventId = 1110, Level = LogLevel.Information, Message = "Connection {ConnectionId} disconnected: key {AppId}.{KeyId} was removed or its secret changed")]
    private static partial void LogKeyRevoked(ILogger logger, string connectionId, string appId, string keyId);
}

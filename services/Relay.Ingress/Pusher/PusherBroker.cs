using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Auth.Verification;
using Relay.Core.Messages;

namespace Relay.Ingress.Pusher;

/// <summary>
/// What every Pusher connection of the node shares: the node, the options, the keys, the signed-in users (for
/// <c>terminate_connections</c>) and the last message's frame, so a message fanned out to many Pusher subscribers is
/// encoded once.
/// </summary>
internal sealed class PusherBroker(IngressNode node, IOptions<PusherOptions> options, IRelayKeys keys, PusherWebhooks webhooks, ILogger<PusherConnection> logger)
{
    /// <summary>What starts the idempotency key of a message that one socket must not get back (client events, HTTP <c>socket_id</c>).</summary>
    public const string ExcludePrefix = "px:";

    /// <summary>Protocol versions served: pusher-js 8 speaks 7; 5 and 6 differ from it in nothing the server sends.</summary>
    public const int MinProtocol = 5;

    /// <inheritdoc cref="MinProtocol"/>
    public const int MaxProtocol = 7;

    /// <summary>The name of the message <c>terminate_connections</c> publishes on the user's Relay channel (Pusher clients never see it).</summary>
    public const string TerminateEvent = "pusher_internal:terminate";

    private readonly ConcurrentDictionary<(string App, string User), ConcurrentDictionary<PusherConnection, byte>> _users = new();
    private readonly ConcurrentDictionary<string, StrongBox<int>> _connections = new(StringComparer.Ordinal);
    private Encoded? _last;

    public IngressNode Node { get; } = node;

    public PusherOptions Options { get; } = options.Value;

    /// <summary>The largest event data: <c>Relay:Pusher:MaxEventBytes</c>, capped by <c>Relay:Ingress:MaxMessageBytes</c>.</summary>
    public int MaxEventBytes { get; } = Math.Min(options.Value.MaxEventBytes, node.Options.MaxMessageBytes);

    public IRelayKeys Keys { get; } = keys;

    /// <summary>The apps' webhooks (client events and cache misses are told here).</summary>
    public PusherWebhooks Webhooks { get; } = webhooks;

    /// <summary>The settings of <paramref name="app"/> (<c>Relay:Pusher:Apps:{app}</c>), or null.</summary>
    public PusherAppOptions? App(string app) => Options.Apps.TryGetValue(app, out var settings) ? settings : null;

    /// <summary>Counts a new connection of <paramref name="app"/> on this node; false (and not counted) past <paramref name="quota"/> (0: none).</summary>
    public bool TryOpen(string app, int quota)
    {
        var count = _connections.GetOrAdd(app, static _ => new StrongBox<int>());
        if (Interlocked.Increment(ref count.Value) > quota && quota > 0)
        {
            Interlocked.Decrement(ref count.Value);
            return false;
        }

        return true;
    }

    /// <summary>A connection counted by <see cref="TryOpen"/> ended.</summary>
    public void Closed(string app)
    {
        if (_connections.TryGetValue(app, out var count))
        {
            Interlocked.Decrement(ref count.Value);
        }
    }

    /// <summary>
    /// The checks a Pusher upgrade (<c>/app/{key}?protocol=N</c>) passes before it is counted, on either transport: the
    /// protocol version, the key, the app enabled. The key's principal; or null with the <c>pusher:error</c> code and
    /// message to refuse it with. <see cref="TryCountAsync"/> comes next.
    /// </summary>
    public RelayPrincipal? Check(string key, string protocol, out int code, out string message)
    {
        code = 0;
        message = "";
        if (protocol.Length == 0)
        {
            (code, message) = (PusherConnection.NoProtocol, "No protocol version supplied: connect to /app/{key}?protocol=7");
            return null;
        }

        if (!int.TryParse(protocol, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var version) || version is < MinProtocol or > MaxProtocol)
        {
            (code, message) = (PusherConnection.UnsupportedProtocol, $"Unsupported protocol version {protocol}: this server speaks {MinProtocol} to {MaxProtocol}");
            return null;
        }

        if (Keys.Find(key) is not { } principal)
        {
            (code, message) = (PusherConnection.AppDoesNotExist, $"App key {key} does not exist");
            return null;
        }

        if (App(principal.AppId) is { Enabled: false })
        {
            (code, message) = (PusherConnection.AppDisabled, $"App {principal.AppId} is disabled (Relay:Pusher:Apps:{principal.AppId}:Enabled)");
            return null;
        }

        return principal;
    }

    /// <summary>
    /// Counts a checked connection of <paramref name="app"/>: its Pusher quota on this node, then its limits over every
    /// protocol, on this node and across the cluster (<c>Relay:Ingress:AppLimits</c>), answered as Pusher's own quota is
    /// (4004). Null when counted (<see cref="Release"/> when it ends); else the message to refuse it with, nothing counted.
    /// </summary>
    public async ValueTask<string?> TryCountAsync(string app, CancellationToken cancellationToken)
    {
        var settings = App(app);
        if (!TryOpen(app, settings?.MaxConnections ?? 0))
        {
            return $"App {app} is over its connection quota ({settings!.MaxConnections} on this node, Relay:Pusher:Apps:{app}:MaxConnections)";
        }

        if (await Node.AppLimits.TryOpenAsync(app, cancellationToken).ConfigureAwait(false) is { } overLimit)
        {
            Closed(app);
            return overLimit.Message;
        }

        return null;
    }

    /// <summary>A connection <see cref="TryCountAsync"/> counted ended.</summary>
    public void Release(string app)
    {
        Node.AppLimits.Closed(app);
        Closed(app);
    }

    public ILogger<PusherConnection> Logger { get; } = logger;

    /// <summary>A new socket id, <c>digits.digits</c> as Pusher's (random: unique across nodes without asking anyone).</summary>
    public static string NewSocketId()
    {
        Span<byte> bytes = stackalloc byte[8];
        RandomNumberGenerator.Fill(bytes);
        var a = BitConverter.ToUInt32(bytes) % 1_000_000_000u;
        var b = BitConverter.ToUInt32(bytes[4..]) % 1_000_000_000u;
        return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{a}.{b}");
    }

    /// <summary>An idempotency key that tells <paramref name="socketId"/>'s connection to skip the message (unique, so never a duplicate).</summary>
    public static string ExcludingId(string socketId) =>
        ExcludePrefix + socketId + ":" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));

    /// <summary>Whether <paramref name="message"/> was published with <see cref="ExcludingId"/> of <paramref name="socketId"/>.</summary>
    public static bool Excludes(RelayMessage message, string socketId)
    {
        if (message.Id is not { } id || !id.StartsWith(ExcludePrefix, StringComparison.Ordinal))
        {
            return false;
        }

        var rest = id.AsSpan(ExcludePrefix.Length);
        return rest.Length > socketId.Length && rest[socketId.Length] == ':' && rest.StartsWith(socketId, StringComparison.Ordinal);
    }

    /// <summary>The frame of <paramref name="message"/>, encoded once for all the node's Pusher subscribers of a fan-out.</summary>
    public byte[] FrameOf(RelayMessage message)
    {
        var last = Volatile.Read(ref _last);
        if (last is not null && ReferenceEquals(last.Message, message))
        {
            return last.Frame;
        }

        var encoded = new Encoded(message, PusherFrames.Message(message));
        Volatile.Write(ref _last, encoded);
        return encoded.Frame;
    }

    public void SignedIn(string app, string user, PusherConnection connection) =>
        _users.GetOrAdd((app, user), static _ => new())[connection] = 0;

    public void SignedOut(string app, string user, PusherConnection connection)
    {
        if (_users.TryGetValue((app, user), out var set))
        {
            set.TryRemove(connection, out _);
            if (set.IsEmpty)
            {
                _users.TryRemove(new KeyValuePair<(string, string), ConcurrentDictionary<PusherConnection, byte>>((app, user), set));
            }
        }
    }

    /// <summary>Closes every connection of this node signed in as <paramref name="user"/>; how many.</summary>
    public int Terminate(string app, string user)
    {
        if (!_users.TryGetValue((app, user), out var set))
        {
            return 0;
        }

        var count = 0;
        foreach (var connection in set.Keys)
        {
            connection.Terminate();
            count++;
        }

        return count;
    }

    private sealed record Encoded(RelayMessage Message, byte[] Frame);
}

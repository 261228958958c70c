using Relay.Redis.Internal;

namespace Relay.Redis;

/// <summary>
/// One multiplexed, pipelined connection to a Redis endpoint, shared by any number of concurrent callers.
/// Commands are written in call order and replies matched first-in first-out. If the socket is lost, the
/// connection reconnects on its own (exponential backoff with jitter, replaying HELLO/AUTH/SELECT); a command
/// issued meanwhile waits for the new socket, bounded by <see cref="RedisConnectionOptions.CommandTimeout"/>,
/// rather than failing at once, so a short outage costs latency rather than errors. Commands already written
/// to a lost socket fail with <see cref="RedisConnectionException"/> (they may or may not have run).
/// Blocking commands (BLPOP, XREAD BLOCK) and SUBSCRIBE do not belong here: use <see cref="RedisSubscriber"/>.
/// </summary>
public sealed class RedisConnection : IAsyncDisposable
{
    private readonly RedisLink _link;

    private RedisConnection(RedisConnectionOptions options)
    {
        _link = new RedisLink(options, this, outOfBand: null, onReady: null, RedisMetrics.For(options)?.Command);
    }

    /// <summary>Raised on every state change and failed reconnect attempt (on the connection's own threads; keep it short).</summary>
    public event EventHandler<RedisConnectionStateChangedEventArgs>? StateChanged
    {
        add => _link.StateChanged += value;
        remove => _link.StateChanged -= value;
    }

    /// <summary>The (validated, copied) options.</summary>
    public RedisConnectionOptions Options => _link.Options;

    /// <summary>The current state.</summary>
    public RedisConnectionState State => _link.State;

    /// <summary>Connects and runs the handshake; fails (no background retry) if the first attempt fails.</summary>
    /// <exception cref="ArgumentException">The options are invalid.</exception>
    /// <exception cref="RedisConnectionException">The server could not be reached or refused AUTH/SELECT.</exception>
    /// <exception cref="TimeoutException">The connect took longer than <see cref="RedisConnectionOptions.ConnectTimeout"/>.</exception>
    public static async Task<RedisConnection> ConnectAsync(RedisConnectionOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var connection = new RedisConnection(options.ValidatedCopy());
        try
        {
            await connection._link.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return connection;
    }

    /// <summary>
    /// Sends any command (<c>ExecuteAsync("SET", key, value, "PX", 1000)</c>) and returns its reply. The
    /// arguments are written before this method returns, so spans and buffers may be reused at once.
    /// </summary>
    /// <exception cref="RedisServerException">Redis answered with an error.</exception>
    /// <exception cref="TimeoutException">No reply within the command timeout (the message names the command).</exception>
    /// <exception cref="RedisConnectionException">The socket was lost after the command was written.</exception>
    public Task<RedisValue> ExecuteAsync(string command, params ReadOnlySpan<RedisArg> args)
    {
        ArgumentException.ThrowIfNullOrEmpty(command);
        return _link.ExecuteAsync(command, args);
    }

    /// <summary>Closes the socket; pending and waiting commands fail.</summary>
    public ValueTask DisposeAsync() => _link.DisposeAsync();
}

using System.Diagnostics;

namespace Relay.Redis.Internal;

/// <summary>
/// Keeps one usable <see cref="RedisSession"/> to an endpoint: the first connect, the handshake
/// (HELLO 3 / AUTH / SELECT) on every socket, and reconnects with exponential backoff and jitter.
/// </summary>
internal sealed class RedisLink : IAsyncDisposable
{
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _disposed = new();
    private readonly Func<RedisSession, RedisValue, bool>? _outOfBand;
    private readonly Func<RedisSession, CancellationToken, Task>? _onReady;
    private readonly object _sender;
    private RedisSession? _current;
    private TaskCompletionSource _connected = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _reconnectLoop = Task.CompletedTask;
    private Exception? _lastError;

    public RedisLink(RedisConnectionOptions options, object sender, Func<RedisSession, RedisValue, bool>? outOfBand, Func<RedisSession, CancellationToken, Task>? onReady, RedisRoleMetrics? metrics)
    {
        Options = options;
        _sender = sender;
        _outOfBand = outOfBand;
        _onReady = onReady;
        Metrics = metrics;
        metrics?.Attach();
    }

    public event EventHandler<RedisConnectionStateChangedEventArgs>? StateChanged;

    public RedisConnectionOptions Options { get; }

    /// <summary>Where this connection's counts go; null when no meter factory was given.</summary>
    public RedisRoleMetrics? Metrics { get; }

    public RedisConnectionState State { get; private set; } = RedisConnectionState.Connecting;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var session = await ConnectOnceAsync(cancellationToken).ConfigureAwait(false);
        Install(session);
    }

    public Task<RedisValue> ExecuteAsync(string command, ReadOnlySpan<RedisArg> args)
    {
        ObjectDisposedException.ThrowIf(_disposed.IsCancellationRequested, _sender);
        var pending = new PendingCommand(command, Environment.TickCount64 + (long)Options.CommandTimeout.TotalMilliseconds, Metrics?.TimesRoundTrips == true ? Stopwatch.GetTimestamp() : 0);
        var session = Volatile.Read(ref _current);
        if (session is not null && session.TrySend(pending, command, args))
        {
            return pending.Task;
        }

        // Disconnected: keep the bytes (the caller's span does not outlive this call) and wait for a socket.
        return SendWhenConnectedAsync(pending, RespWriter.Encode(command, args));
    }

    private async Task<RedisValue> SendWhenConnectedAsync(PendingCommand pending, byte[] encoded)
    {
        while (true)
        {
            Task connected;
            RedisSession? session;
            lock (_gate)
            {
                session = _current;
                connected = _connected.Task;
            }

            if (session is not null && session.TrySend(pending, encoded))
            {
                return await pending.Task.ConfigureAwait(false);
            }

            var remaining = pending.Deadline - Environment.TickCount64;
            if (remaining <= 0)
            {
                Metrics?.Error(RedisErrorKind.Timeout);
                throw new TimeoutException(
                    $"Redis command {pending.Command} timed out after {Options.CommandTimeout.TotalMilliseconds:0} ms waiting for the connection to {Options.EndpointName} to be re-established.",
                    _lastError);
            }

            try
            {
                await connected.WaitAsync(TimeSpan.FromMilliseconds(remaining)).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // The loop reports it with the command's name.
            }
        }
    }

    private async Task<RedisSession> ConnectOnceAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _disposed.Token);
        timeout.CancelAfter(Options.ConnectTimeout);
        RedisSession? session = null;
        try
        {
            session = await RedisSession.ConnectAsync(Options, _outOfBand, OnSessionBroken, Metrics, timeout.Token).ConfigureAwait(false);
            await HandshakeAsync(session).WaitAsync(timeout.Token).ConfigureAwait(false);
            if (_onReady is not null)
            {
                await _onReady(session, timeout.Token).ConfigureAwait(false);
            }

            return session;
        }
        catch (Exception ex)
        {
            if (session is not null)
            {
                await session.DisposeAsync().ConfigureAwait(false);
            }

            if (!cancellationToken.IsCancellationRequested && !_disposed.IsCancellationRequested)
            {
                Metrics?.Error(RedisErrorKind.ConnectFailed);
            }

            if (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested && !_disposed.IsCancellationRequested)
            {
                throw new TimeoutException($"Connecting to Redis at {Options.EndpointName} did not finish within {Options.ConnectTimeout.TotalMilliseconds:0} ms.", ex);
            }

            if (ex is RedisServerException server)
            {
                throw new RedisConnectionException($"Redis at {Options.EndpointName} refused the connection handshake ({server.Command}): {server.ServerMessage}", ex);
            }

            if (ex is OperationCanceledException or RedisConnectionException)
            {
                throw;
            }

            throw new RedisConnectionException($"Could not connect to Redis at {Options.EndpointName}{(Options.Tls ? " (TLS)" : "")}: {ex.Message}", ex);
        }
    }

    private async Task HandshakeAsync(RedisSession session)
    {
        // Pipelined: every handshake command is written before the first reply is awaited.
        var replies = new List<Task<RedisValue>>(3);
        if (Options.Resp3)
        {
            replies.Add(Options.Password is null
                ? session.SendAsync("HELLO", "3")
                : session.SendAsync("HELLO", "3", "AUTH", Options.Username ?? "default", Options.Password));
        }
        else if (Options.Password is not null)
        {
            replies.Add(Options.Username is null
                ? session.SendAsync("AUTH", Options.Password)
                : session.SendAsync("AUTH", Options.Username, Options.Password));
        }

        if (Options.Database != 0)
        {
            replies.Add(session.SendAsync("SELECT", Options.Database));
        }

        if (replies.Count == 0)
        {
            // Nothing else proves that a Redis server answers on this socket.
            replies.Add(session.SendAsync("PING"));
        }

        foreach (var reply in replies)
        {
            await reply.ConfigureAwait(false);
        }
    }

    private void Install(RedisSession session)
    {
        TaskCompletionSource connected;
        lock (_gate)
        {
            if (_disposed.IsCancellationRequested)
            {
                _ = session.DisposeAsync().AsTask();
                return;
            }

            if (session.IsBroken)
            {
                // It broke before it was installed, so OnSessionBroken ignored it: go round again.
                _reconnectLoop = Task.Run(ReconnectLoopAsync);
                return;
            }

            _current = session;
            connected = _connected;
            if (State == RedisConnectionState.Reconnecting)
            {
                Metrics?.Reconnected();
            }

            State = RedisConnectionState.Connected;
            Metrics?.ConnectedChanged(1);
        }

        connected.TrySetResult();
        Raise(RedisConnectionState.Connected, null, 0);
    }

    private void OnSessionBroken(RedisSession session, Exception reason)
    {
        lock (_gate)
        {
            if (_current != session || _disposed.IsCancellationRequested)
            {
                return;
            }

            _current = null;
            _lastError = reason;
            _connected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            State = RedisConnectionState.Reconnecting;
            Metrics?.Error(reason switch
            {
                TimeoutException => RedisErrorKind.Timeout,
                RedisProtocolException => RedisErrorKind.Protocol,
                _ => RedisErrorKind.ConnectionLost,
            });
            Metrics?.ConnectedChanged(-1);
            _reconnectLoop = Task.Run(ReconnectLoopAsync);
        }

        _ = session.DisposeAsync().AsTask();
        Raise(RedisConnectionState.Reconnecting, reason, 0);
    }

    private async Task ReconnectLoopAsync()
    {
        var attempt = 0;
        while (!_disposed.IsCancellationRequested)
        {
            if (attempt > 0)
            {
                try
                {
                    await Task.Delay(Backoff(attempt), _disposed.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }

            try
            {
                var session = await ConnectOnceAsync(CancellationToken.None).ConfigureAwait(false);
                Install(session);
                return;
            }
            catch (Exception ex) when (!_disposed.IsCancellationRequested)
            {
                attempt++;
                _lastError = ex;
                Raise(RedisConnectionState.Reconnecting, ex, attempt);
            }
            catch (Exception)
            {
                return;
            }
        }
    }

    private TimeSpan Backoff(int attempt)
    {
        // Exponential, capped, with "equal jitter" (half fixed, half random) so many clients spread out after an outage.
        var min = Options.ReconnectMinDelay.TotalMilliseconds;
        var cap = Math.Min(Options.ReconnectMaxDelay.TotalMilliseconds, min * Math.Pow(2, Math.Min(attempt - 1, 30)));
        return TimeSpan.FromMilliseconds((cap / 2) + (Random.Shared.NextDouble() * cap / 2));
    }

    private void Raise(RedisConnectionState state, Exception? error, int attempt)
    {
        var handler = StateChanged;
        if (handler is null)
        {
            return;
        }

        try
        {
            handler(_sender, new RedisConnectionStateChangedEventArgs(state, error, attempt));
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // A listener's bug must not stop reconnecting.
        }
    }

    public async ValueTask DisposeAsync()
    {
        RedisSession? session;
        lock (_gate)
        {
            if (_disposed.IsCancellationRequested)
            {
                return;
            }

            _disposed.Cancel();
            session = _current;
            _current = null;
            if (State == RedisConnectionState.Connected)
            {
                Metrics?.ConnectedChanged(-1);
            }

            State = RedisConnectionState.Disposed;
            _connected.TrySetException(new ObjectDisposedException(_sender.GetType().Name));

            // Observed here, so a signal nobody waited on is not reported as an unobserved task exception.
            _ = _connected.Task.Exception;
        }

        if (session is not null)
        {
            await session.DisposeAsync().ConfigureAwait(false);
        }

        await _reconnectLoop.ConfigureAwait(false);
        Raise(RedisConnectionState.Disposed, null, 0);
        _disposed.Dispose();
    }
}

using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;

namespace Relay.Redis.Internal;

/// <summary>
/// One socket's life: callers append commands to an outbound pipe under a lock (so write order is FIFO order),
/// a write loop drains it to the socket in as few writes as it can, and a read loop parses replies and completes
/// the pending commands in order. Once broken it stays broken; <see cref="RedisLink"/> makes a new one.
/// </summary>
internal sealed class RedisSession : IAsyncDisposable
{
    private const int CoalesceLimit = 64 * 1024;

    private readonly Lock _gate = new();
    private readonly ConcurrentQueue<PendingCommand> _pending = new();
    private readonly Stream _stream;
    private readonly PipeReader _input;
    private readonly Pipe _outbound;
    private readonly CancellationTokenSource _cts = new();
    private readonly RedisConnectionOptions _options;
    private readonly Func<RedisSession, RedisValue, bool>? _outOfBand;
    private readonly Action<RedisSession, Exception> _onBroken;
    private readonly RedisRoleMetrics? _metrics;
    private Timer? _timeoutTimer;
    private Task _loops = Task.CompletedTask;
    private volatile bool _broken;

    private RedisSession(Stream stream, RedisConnectionOptions options, Func<RedisSession, RedisValue, bool>? outOfBand, Action<RedisSession, Exception> onBroken, RedisRoleMetrics? metrics)
    {
        _stream = stream;
        _options = options;
        _outOfBand = outOfBand;
        _onBroken = onBroken;
        _metrics = metrics;
        _input = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 16 * 1024, leaveOpen: true));

        // No back-pressure: commands are bounded by their callers and their timeouts, and a flush never waits.
        _outbound = new Pipe(new PipeOptions(pauseWriterThreshold: 0, resumeWriterThreshold: 0, minimumSegmentSize: 8 * 1024, useSynchronizationContext: false));
    }

    public bool IsBroken => _broken;

    public int PendingCount => _pending.Count;

    public static async Task<RedisSession> ConnectAsync(
        RedisConnectionOptions options,
        Func<RedisSession, RedisValue, bool>? outOfBand,
        Action<RedisSession, Exception> onBroken,
        RedisRoleMetrics? metrics,
        CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        Stream? stream = null;
        try
        {
            await socket.ConnectAsync(new DnsEndPoint(options.Host, options.Port), cancellationToken).ConfigureAwait(false);
            stream = new NetworkStream(socket, ownsSocket: true);
            if (options.Tls)
            {
                var tls = new SslStream(stream, leaveInnerStreamOpen: false);
                stream = tls;
                await tls.AuthenticateAsClientAsync(
                    new SslClientAuthenticationOptions
                    {
                        TargetHost = options.TlsTargetHost ?? options.Host,
                        RemoteCertificateValidationCallback = options.TlsCertificateValidation,
                    },
                    cancellationToken).ConfigureAwait(false);
            }
        }
        catch
        {
            if (stream is not null)
            {
                await stream.DisposeAsync().ConfigureAwait(false);
            }
            else
            {
                socket.Dispose();
            }

            throw;
        }

        var session = new RedisSession(stream, options, outOfBand, onBroken, metrics);
        session.Start();
        return session;
    }

    private void Start()
    {
        // One timer per socket, not per command: replies come in order, so only the oldest command can be late first.
        var period = Math.Clamp((long)_options.CommandTimeout.TotalMilliseconds / 10, 10, 1000);
        _timeoutTimer = new Timer(static state => ((RedisSession)state!).CheckTimeout(), this, period, period);
        _loops = Task.WhenAll(Task.Run(ReadLoopAsync), Task.Run(WriteLoopAsync));
    }

    /// <summary>Writes the command and queues its completion; false when the session is broken (nothing written).</summary>
    public bool TrySend(PendingCommand pending, string command, ReadOnlySpan<RedisArg> args)
    {
        lock (_gate)
        {
            if (_broken)
            {
                return false;
            }

            _pending.Enqueue(pending);
            RespWriter.WriteCommand(_outbound.Writer, command, args);
            Flush();
            _metrics?.Sent();
            return true;
        }
    }

    /// <summary>As <see cref="TrySend(PendingCommand, string, ReadOnlySpan{RedisArg})"/> with the command already encoded.</summary>
    public bool TrySend(PendingCommand pending, ReadOnlySpan<byte> encoded)
    {
        lock (_gate)
        {
            if (_broken)
            {
                return false;
            }

            _pending.Enqueue(pending);
            _outbound.Writer.Write(encoded);
            Flush();
            _metrics?.Sent();
            return true;
        }
    }

    /// <summary>Writes a command whose replies arrive out of band (SUBSCRIBE and kin): no completion is queued.</summary>
    public bool TrySendNoReply(string command, ReadOnlySpan<RedisArg> args)
    {
        lock (_gate)
        {
            if (_broken)
            {
                return false;
            }

            RespWriter.WriteCommand(_outbound.Writer, command, args);
            Flush();
            _metrics?.Sent();
            return true;
        }
    }

    public Task<RedisValue> SendAsync(string command, params ReadOnlySpan<RedisArg> args)
    {
        var pending = new PendingCommand(command, Environment.TickCount64 + (long)_options.CommandTimeout.TotalMilliseconds, _metrics?.TimesRoundTrips == true ? Stopwatch.GetTimestamp() : 0);
        if (!TrySend(pending, command, args))
        {
            throw new RedisConnectionException($"The connection to {_options.EndpointName} was lost before {command} could be sent.");
        }

        return pending.Task;
    }

    private void Flush()
    {
        // Never waits (no pause threshold); the write loop wakes up and sends.
        var flush = _outbound.Writer.FlushAsync();
        if (flush.IsCompleted)
        {
            flush.GetAwaiter().GetResult();
        }
        else
        {
            _ = flush.AsTask();
        }
    }

    private async Task WriteLoopAsync()
    {
        var reader = _outbound.Reader;
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync(_cts.Token).ConfigureAwait(false);
                var buffer = result.Buffer;
                if (buffer.IsSingleSegment)
                {
                    await _stream.WriteAsync(buffer.First, _cts.Token).ConfigureAwait(false);
                }
                else if (buffer.Length <= CoalesceLimit)
                {
                    // Many small commands queued while the last write ran: one system call (one TLS record) for all.
                    var length = (int)buffer.Length;
                    var rented = ArrayPool<byte>.Shared.Rent(length);
                    try
                    {
                        buffer.CopyTo(rented);
                        await _stream.WriteAsync(rented.AsMemory(0, length), _cts.Token).ConfigureAwait(false);
                    }
                    finally
                    {
                        ArrayPool<byte>.Shared.Return(rented);
                    }
                }
                else
                {
                    foreach (var segment in buffer)
                    {
                        await _stream.WriteAsync(segment, _cts.Token).ConfigureAwait(false);
                    }
                }

                await _stream.FlushAsync(_cts.Token).ConfigureAwait(false);
                reader.AdvanceTo(buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
        {
            Break(new RedisConnectionException($"Writing to {_options.EndpointName} failed: {ex.Message}", ex));
        }
        finally
        {
            await reader.CompleteAsync().ConfigureAwait(false);
        }
    }

    private async Task ReadLoopAsync()
    {
        try
        {
            while (true)
            {
                var result = await _input.ReadAsync(_cts.Token).ConfigureAwait(false);
                var buffer = result.Buffer;
                while (RespParser.TryRead(buffer, out var value, out var end))
                {
                    buffer = buffer.Slice(end);
                    if (!Dispatch(value))
                    {
                        return;
                    }
                }

                // Examined everything: wake again only when more bytes arrive.
                _input.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted)
                {
                    Break(new RedisConnectionException($"{_options.EndpointName} closed the connection."));
                    return;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or OperationCanceledException or RedisProtocolException or InvalidOperationException)
        {
            Break(ex is RedisProtocolException ? ex : new RedisConnectionException($"Reading from {_options.EndpointName} failed: {ex.Message}", ex));
        }
        finally
        {
            await _input.CompleteAsync().ConfigureAwait(false);
        }
    }

    private bool Dispatch(in RedisValue value)
    {
        if (value.IsError)
        {
            // Counted here, once for every error frame: command replies and refused SUBSCRIBEs alike.
            _metrics?.Error(RedisErrorKind.ErrorReply);
        }

        if (_outOfBand is not null && _outOfBand(this, value))
        {
            return true;
        }

        if (value.Type == RespType.Push)
        {
            // Nothing on a command connection subscribes, so a stray push (an invalidation) is not a reply.
            return true;
        }

        if (!_pending.TryDequeue(out var pending))
        {
            Break(new RedisProtocolException($"{_options.EndpointName} sent a reply ({value}) with no command waiting for it."));
            return false;
        }

        if (pending.Started != 0)
        {
            _metrics!.RoundTrip(pending.Started);
        }

        pending.Complete(value);
        return true;
    }

    private void CheckTimeout()
    {
        if (_pending.TryPeek(out var head) && Environment.TickCount64 > head.Deadline)
        {
            Break(
                new TimeoutException($"Redis command {head.Command} to {_options.EndpointName} got no reply within {_options.CommandTimeout.TotalMilliseconds:0} ms; the connection is reset because later replies could no longer be matched."),
                head);
        }
    }

    /// <summary>Fails everything pending, closes the socket and tells the link; only the first call counts.</summary>
    public void Break(Exception reason, PendingCommand? timedOut = null)
    {
        lock (_gate)
        {
            if (_broken)
            {
                return;
            }

            _broken = true;
            _outbound.Writer.Complete();
        }

        _timeoutTimer?.Dispose();
        _cts.Cancel();
        while (_pending.TryDequeue(out var pending))
        {
            pending.TrySetException(pending == timedOut
                ? reason
                : new RedisConnectionException($"The connection to {_options.EndpointName} was lost before the reply to {pending.Command} arrived: {reason.Message}", reason));
        }

        _stream.Dispose();
        _onBroken(this, reason);
    }

    public async ValueTask DisposeAsync()
    {
        Break(new ObjectDisposedException(nameof(RedisConnection), $"The connection to {_options.EndpointName} was closed."));
        try
        {
            await _loops.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException or InvalidOperationException)
        {
            // The loops report through Break; what is left here is the noise of a closed socket.
        }

        _cts.Dispose();
    }
}

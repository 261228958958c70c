using System.Threading.Channels;
using Grpc.Core;
using Relay.Grpc.V1;

namespace Relay.Services.Tests.Grpc;

/// <summary>
/// One Realtime.Connect call from the generated client: frames read as they come (unless <see cref="PauseReading"/>),
/// requests sent with a fresh ref and matched by it, frames read past kept in order for later reads.
/// </summary>
internal sealed class GrpcStream : IAsyncDisposable
{
    private readonly AsyncDuplexStreamingCall<ClientFrame, ServerFrame> _call;
    private readonly Channel<ServerFrame> _inbox = System.Threading.Channels.Channel.CreateUnbounded<ServerFrame>();
    private readonly List<ServerFrame> _skipped = [];
    private volatile TaskCompletionSource? _paused;
    private readonly Task _reader;
    private int _nextRef;

    private GrpcStream(AsyncDuplexStreamingCall<ClientFrame, ServerFrame> call)
    {
        _call = call;
        _reader = ReadAsync();
    }

    public Connected Connected { get; private set; } = null!;

    /// <summary>How the call ended (its status), once the server ended it.</summary>
    public RpcException? Ended { get; private set; }

    public AsyncDuplexStreamingCall<ClientFrame, ServerFrame> Call => _call;

    public static async Task<GrpcStream> ConnectAsync(Relay.Grpc.V1.Realtime.RealtimeClient client, Metadata metadata)
    {
        var stream = new GrpcStream(client.Connect(metadata, cancellationToken: default));
        ServerFrame first;
        try
        {
            first = await stream.ReceiveAsync();
        }
        catch (ChannelClosedException)
        {
            // The call ended before its first frame (refused credentials): its status is what the caller wants.
            await stream.DisposeAsync();
            throw stream.Ended ?? throw new InvalidOperationException("the call ended without a frame or a status");
        }

        stream.Connected = first.Connected ?? throw new InvalidOperationException($"the first frame was {first.FrameCase}, not connected");
        return stream;
    }

    /// <summary>Stops taking frames off the call (after the one being read, if any): the client's HTTP/2 window fills and the server's writes wait.</summary>
    public void PauseReading() => _paused = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

    public void ResumeReading() => _paused?.TrySetResult();

    public Task SendAsync(ClientFrame frame) => _call.RequestStream.WriteAsync(frame);

    public async Task<ServerFrame> RequestAsync(ClientFrame frame)
    {
        var reference = "r" + Interlocked.Increment(ref _nextRef);
        frame.Ref = reference;
        await SendAsync(frame).WaitAsync(GrpcClients.Timeout);
        return await ReceiveMatchingAsync(f => f.Ref == reference);
    }

    public async Task<ServerFrame> ReceiveMatchingAsync(Func<ServerFrame, bool> match, TimeSpan? timeout = null)
    {
        for (var i = 0; i < _skipped.Count; i++)
        {
            if (match(_skipped[i]))
            {
                var found = _skipped[i];
                _skipped.RemoveAt(i);
                return found;
            }
        }

        using var cts = new CancellationTokenSource(timeout ?? GrpcClients.Timeout);
        while (true)
        {
            var next = await _inbox.Reader.ReadAsync(cts.Token);
            if (match(next))
            {
                return next;
            }

            _skipped.Add(next);
        }
    }

    public async Task<ServerFrame> ReceiveAsync(TimeSpan? timeout = null)
    {
        if (_skipped.Count > 0)
        {
            var first = _skipped[0];
            _skipped.RemoveAt(0);
            return first;
        }

        using var cts = new CancellationTokenSource(timeout ?? GrpcClients.Timeout);
        return await _inbox.Reader.ReadAsync(cts.Token);
    }

    public Task<ServerFrame> ReceiveMessageAsync(TimeSpan? timeout = null) =>
        ReceiveMatchingAsync(static f => f.FrameCase == ServerFrame.FrameOneofCase.Message, timeout);

    /// <summary>Every frame until the server ends the call; its status is then in <see cref="Ended"/>.</summary>
    public async Task<List<ServerFrame>> DrainUntilEndedAsync(TimeSpan? timeout = null)
    {
        var frames = new List<ServerFrame>(_skipped);
        _skipped.Clear();
        using var cts = new CancellationTokenSource(timeout ?? GrpcClients.Timeout);
        await foreach (var frame in _inbox.Reader.ReadAllAsync(cts.Token))
        {
            frames.Add(frame);
        }

        return frames;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await _call.RequestStream.CompleteAsync().WaitAsync(TimeSpan.FromSeconds(2));
        }
        catch (Exception ex) when (ex is InvalidOperationException or RpcException or TimeoutException or IOException or OperationCanceledException)
        {
            // The call ended already.
        }

        _call.Dispose();
        try
        {
            await _reader.WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (TimeoutException)
        {
            // Disposed calls end their reads; a reader still blocked is left to the call's cancellation.
        }
    }

    private async Task ReadAsync()
    {
        try
        {
            while (true)
            {
                if (!await _call.ResponseStream.MoveNext(CancellationToken.None))
                {
                    break;
                }

                await _inbox.Writer.WriteAsync(_call.ResponseStream.Current);
                if (_paused is { } paused)
                {
                    await paused.Task;
                }
            }
        }
        catch (RpcException ex)
        {
            Ended = ex;
        }
        catch (ObjectDisposedException)
        {
            // Disposed.
        }
        finally
        {
            _inbox.Writer.TryComplete();
        }
    }
}

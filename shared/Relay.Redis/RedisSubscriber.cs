using System.Text;
using System.Threading.Channels;
using Relay.Redis.Internal;

namespace Relay.Redis;

/// <summary>
/// The dedicated pub/sub connection (a subscribed socket can run nothing else). Keeps the set of wanted
/// channels and patterns and subscribes to all of them again after every reconnect. Messages published while
/// the socket is down are lost: Redis pub/sub is at most once. Speaks RESP2 (message arrays) or RESP3 (push frames).
/// </summary>
public sealed class RedisSubscriber : IAsyncDisposable
{
    // Keeps re-subscribe commands to a reasonable size.
    private const int SubscribeBatch = 256;

    private readonly Lock _gate = new();
    private readonly HashSet<string> _channels = new(StringComparer.Ordinal);
    private readonly HashSet<string> _patterns = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Kind, string Name), List<TaskCompletionSource>> _confirmations = [];
    private readonly Action<RedisMessage>? _onMessage;
    private readonly Channel<RedisMessage>? _messages;
    private readonly RedisLink _link;
    private RedisSession? _session;

    private RedisSubscriber(RedisConnectionOptions options, Action<RedisMessage>? onMessage)
    {
        _onMessage = onMessage;
        if (onMessage is null)
        {
            _messages = Channel.CreateUnbounded<RedisMessage>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        }

        _link = new RedisLink(options, this, HandleFrame, ResubscribeAsync, RedisMetrics.For(options)?.Subscriber);
    }

    /// <summary>Raised on every state change and failed reconnect attempt.</summary>
    public event EventHandler<RedisConnectionStateChangedEventArgs>? StateChanged
    {
        add => _link.StateChanged += value;
        remove => _link.StateChanged -= value;
    }

    /// <summary>The current state.</summary>
    public RedisConnectionState State => _link.State;

    /// <summary>Every message, in arrival order (unbounded: read it); only when no callback was given to <see cref="ConnectAsync"/>.</summary>
    public ChannelReader<RedisMessage> Messages => _messages?.Reader
        ?? throw new InvalidOperationException("This subscriber delivers to the callback given to ConnectAsync, not to Messages.");

    /// <summary>
    /// Connects. With <paramref name="onMessage"/>, each message is handed to it on the socket's read loop (it must
    /// not block; exceptions it throws are dropped); without, messages go to <see cref="Messages"/>.
    /// </summary>
    public static async Task<RedisSubscriber> ConnectAsync(RedisConnectionOptions options, Action<RedisMessage>? onMessage = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var subscriber = new RedisSubscriber(options.ValidatedCopy(), onMessage);
        try
        {
            await subscriber._link.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await subscriber.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return subscriber;
    }

    /// <summary>SUBSCRIBE; returns once Redis confirmed it (messages published afterwards arrive).</summary>
    /// <exception cref="TimeoutException">No confirmation within the command timeout; the channel stays wanted and is retried on reconnect.</exception>
    public Task SubscribeAsync(string channel) => ChangeAsync("subscribe", channel, _channels, add: true);

    /// <summary>UNSUBSCRIBE; returns once Redis confirmed it.</summary>
    public Task UnsubscribeAsync(string channel) => ChangeAsync("unsubscribe", channel, _channels, add: false);

    /// <summary>PSUBSCRIBE (glob pattern: <c>news.*</c>); returns once Redis confirmed it.</summary>
    public Task PSubscribeAsync(string pattern) => ChangeAsync("psubscribe", pattern, _patterns, add: true);

    /// <summary>PUNSUBSCRIBE; returns once Redis confirmed it.</summary>
    public Task PUnsubscribeAsync(string pattern) => ChangeAsync("punsubscribe", pattern, _patterns, add: false);

    private async Task ChangeAsync(string kind, string name, HashSet<string> wanted, bool add)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        var confirmed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            if (add)
            {
                wanted.Add(name);
            }
            else
            {
                wanted.Remove(name);
            }

            if (!add && (_session is null || _session.IsBroken))
            {
                // Not connected: the next re-subscribe simply leaves it out.
                return;
            }

            var key = (kind, name);
            if (!_confirmations.TryGetValue(key, out var waiters))
            {
                _confirmations[key] = waiters = [];
            }

            waiters.Add(confirmed);

            // Under the lock, so a re-subscribe on a new socket cannot miss a channel added meanwhile.
            _session?.TrySendNoReply(kind.ToUpperInvariant(), [name]);
        }

        try
        {
            await confirmed.Task.WaitAsync(_link.Options.CommandTimeout).ConfigureAwait(false);
        }
        catch (TimeoutException ex)
        {
            _link.Metrics?.Error(RedisErrorKind.Timeout);
            lock (_gate)
            {
                if (_confirmations.TryGetValue((kind, name), out var waiters))
                {
                    waiters.Remove(confirmed);
                }
            }

            throw new TimeoutException($"Redis did not confirm {kind.ToUpperInvariant()} {name} within {_link.Options.CommandTimeout.TotalMilliseconds:0} ms.", ex);
        }
    }

    private Task ResubscribeAsync(RedisSession session, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            _session = session;
            Send(session, "SUBSCRIBE", _channels);
            Send(session, "PSUBSCRIBE", _patterns);
        }

        return Task.CompletedTask;
    }

    private static void Send(RedisSession session, string command, HashSet<string> names)
    {
        var batch = new List<RedisArg>(Math.Min(names.Count, SubscribeBatch));
        foreach (var name in names)
        {
            batch.Add(name);
            if (batch.Count == SubscribeBatch)
            {
                session.TrySendNoReply(command, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(batch));
                batch.Clear();
            }
        }

        if (batch.Count > 0)
        {
            session.TrySendNoReply(command, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(batch));
        }
    }

    // Runs on the read loop for every frame; true when it was pub/sub traffic rather than a command reply.
    private bool HandleFrame(RedisSession session, RedisValue frame)
    {
        if (frame.IsError && session.PendingCount == 0)
        {
            // A refused SUBSCRIBE (no command reply is awaited after the handshake).
            FailAll(new RedisServerException("SUBSCRIBE", frame.ErrorMessage!, null));
            return true;
        }

        if (frame.Type is not (RespType.Push or RespType.Array) || frame.Count < 3)
        {
            return false;
        }

        var kind = frame[0].Memory.Span;
        if (kind.SequenceEqual("message"u8))
        {
            Deliver(new RedisMessage(Decode(frame[1]), frame[2].Memory, null));
        }
        else if (kind.SequenceEqual("pmessage"u8) && frame.Count >= 4)
        {
            Deliver(new RedisMessage(Decode(frame[2]), frame[3].Memory, Decode(frame[1])));
        }
        else if (kind.SequenceEqual("subscribe"u8) || kind.SequenceEqual("unsubscribe"u8)
            || kind.SequenceEqual("psubscribe"u8) || kind.SequenceEqual("punsubscribe"u8))
        {
            Confirm(Decode(frame[0]), Decode(frame[1]));
        }
        else
        {
            return frame.Type == RespType.Push;
        }

        return true;
    }

    private void Confirm(string kind, string name)
    {
        List<TaskCompletionSource>? waiters;
        lock (_gate)
        {
            if (!_confirmations.Remove((kind, name), out waiters))
            {
                return;
            }
        }

        foreach (var waiter in waiters)
        {
            waiter.TrySetResult();
        }
    }

    private void FailAll(Exception error)
    {
        List<TaskCompletionSource> waiters;
        lock (_gate)
        {
            waiters = [.. _confirmations.Values.SelectMany(static list => list)];
            _confirmations.Clear();
        }

        foreach (var waiter in waiters)
        {
            waiter.TrySetException(error);
        }
    }

    private void Deliver(in RedisMessage message)
    {
        if (_onMessage is null)
        {
            _messages!.Writer.TryWrite(message);
            return;
        }

        try
        {
            _onMessage(message);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The callback's failure must not take the subscription down with it.
        }
    }

    private static string Decode(in RedisValue value) => Encoding.UTF8.GetString(value.Memory.Span);

    /// <summary>Closes the socket; <see cref="Messages"/> completes.</summary>
    public async ValueTask DisposeAsync()
    {
        await _link.DisposeAsync().ConfigureAwait(false);
        _messages?.Writer.TryComplete();
        FailAll(new ObjectDisposedException(nameof(RedisSubscriber)));
    }
}

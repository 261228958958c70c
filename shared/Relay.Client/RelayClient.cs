using System.Collections.Concurrent;
using System.Text.Json;

namespace Relay.Client;

/// <summary>
/// A Relay client over one WebSocket (<c>/v1/realtime</c>, protocol v1). Reconnects by itself with exponential backoff
/// and jitter, subscribes again to every channel, and resumes each channel from its last seq so that missed messages
/// arrive exactly once, in order. Thread-safe; dispose it to close the connection and stop every background loop.
/// </summary>
/// <example>
/// <code>
/// await using var client = await RelayClient.ConnectAsync(new RelayClientOptions
/// {
///     Endpoint = new Uri("ws://localhost:8080/v1/realtime"),
///     Key = "demo.root:demo-secret-for-development-only",
///     ClientId = "dotnet",
/// });
/// var subscription = await client.SubscribeAsync("chat:lobby", m => Console.WriteLine($"{m.ClientId}: {m.Data}"));
/// await client.PublishAsync("chat:lobby", new { text = "hi" }, name: "chat");
/// </code>
/// </example>
public sealed partial class RelayClient : IAsyncDisposable
{
    private readonly RelayClientOptions _options;
    private readonly Uri[] _endpoints;
    private int _endpointIndex;
    private readonly CancellationTokenSource _lifetime = new();
    private readonly ConcurrentDictionary<long, PendingRequest> _pending = new();
    private readonly ConcurrentDictionary<string, RelaySubscription> _subscriptions = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();
    private readonly UpgradeErrorCapture _upgradeErrors = new();
    private readonly HttpMessageInvoker _invoker;
    private TaskCompletionSource<ClientConnection> _connected = NewConnectedSignal();
    private ClientConnection? _current;
    private RelayConnectionState _state = RelayConnectionState.Connecting;
    private string? _connectionId;
    private string? _clientId;
    private volatile string? _token;
    private Task _supervisor = Task.CompletedTask;
    private long _nextRef;
    private int _patternCount;
    private int _disposed;

    private RelayClient(RelayClientOptions options)
    {
        _options = options;
        _endpoints = options.RealtimeEndpoints();
        _token = options.Token;
        _invoker = new HttpMessageInvoker(_upgradeErrors);
    }

    /// <summary>The WebSocket endpoint connections go to now (it moves to the next fallback after a failed reconnect).</summary>
    public Uri CurrentEndpoint => _endpoints[Volatile.Read(ref _endpointIndex)];

    /// <summary>Raised when <see cref="State"/> changes (on a background thread; keep handlers short).</summary>
    public event EventHandler<RelayConnectionStateChangedEventArgs>? StateChanged;

    /// <summary>The server's id for the current (or last) connection; changes on every reconnection.</summary>
    public string? ConnectionId
    {
        get
        {
            lock (_gate)
            {
                return _connectionId;
            }
        }
    }

    /// <summary>The client id the server knows this client by (from <see cref="RelayClientOptions.ClientId"/> or the token's <c>sub</c>), if any.</summary>
    public string? ClientId
    {
        get
        {
            lock (_gate)
            {
                return _clientId;
            }
        }
    }

    /// <summary>Where the connection is.</summary>
    public RelayConnectionState State
    {
        get
        {
            lock (_gate)
            {
                return _state;
            }
        }
    }

    private bool IsDisposing => Volatile.Read(ref _disposed) != 0;

    /// <summary>Connects, waits for the server's <c>connected</c> frame, and returns the client.</summary>
    /// <param name="options">Where and how to connect.</param>
    /// <param name="cancellationToken">Cancels connecting (the <see cref="RelayClientOptions.RequestTimeout"/> applies too).</param>
    /// <returns>A connected client.</returns>
    /// <exception cref="RelayClientException">The server refused the connection (e.g. 40102 bad key, 40142 expired token) or could not be reached (50300).</exception>
    /// <exception cref="TimeoutException">No <c>connected</c> frame within the request timeout.</exception>
    public static async Task<RelayClient> ConnectAsync(RelayClientOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var client = new RelayClient(options);
        try
        {
            if (client._token is null && options.TokenProvider is { } provider)
            {
                client._token = await provider(cancellationToken).ConfigureAwait(false);
            }

            var (connection, early) = await client.OpenAsync(cancellationToken).ConfigureAwait(false);
            client._supervisor = client.SuperviseAsync(connection, early);
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return client;
    }

    /// <summary>Publishes <paramref name="data"/> (serialized with <see cref="JsonSerializerOptions.Web"/>) and waits for the server's acknowledgement.</summary>
    /// <param name="channel">The channel.</param>
    /// <param name="data">The payload: any value System.Text.Json can serialize, or <c>null</c>.</param>
    /// <param name="name">An optional event name.</param>
    /// <param name="id">An optional idempotency key (up to 64 characters): a repeat within 2 minutes is acknowledged with the first seq and not delivered again, so retrying after a lost connection is safe.</param>
    /// <param name="cancellationToken">Cancels waiting.</param>
    /// <returns>The message's seq.</returns>
    /// <exception cref="RelayClientException">The server refused it (e.g. 40300, 41300, 42900), or the connection was lost before the reply (50300; publish with an <paramref name="id"/> to retry safely).</exception>
    /// <exception cref="TimeoutException">No reply within <see cref="RelayClientOptions.RequestTimeout"/> (including time spent waiting for a reconnection).</exception>
    public Task<PublishResult> PublishAsync(string channel, object? data, string? name = null, string? id = null, CancellationToken cancellationToken = default) =>
        PublishAsync(channel, JsonSerializer.SerializeToElement(data, JsonSerializerOptions.Web), name, id, cancellationToken);

    /// <summary>Publishes a JSON payload as it is and waits for the server's acknowledgement.</summary>
    /// <param name="channel">The channel.</param>
    /// <param name="data">The payload.</param>
    /// <param name="name">An optional event name.</param>
    /// <param name="id">An optional idempotency key (up to 64 characters).</param>
    /// <param name="cancellationToken">Cancels waiting.</param>
    /// <returns>The message's seq.</returns>
    /// <exception cref="RelayClientException">The server refused it, or the connection was lost before the reply (50300).</exception>
    /// <exception cref="TimeoutException">No reply within <see cref="RelayClientOptions.RequestTimeout"/>.</exception>
    public async Task<PublishResult> PublishAsync(string channel, JsonElement data, string? name = null, string? id = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(channel);
        var ok = await RequestAsync("publish", writer =>
        {
            writer.WriteString("channel", channel);
            if (name is not null)
            {
                writer.WriteString("name", name);
            }

            if (id is not null)
            {
                writer.WriteString("id", id);
            }

            writer.WritePropertyName("data");
            if (data.ValueKind == JsonValueKind.Undefined)
            {
                writer.WriteNullValue();
            }
            else
            {
                data.WriteTo(writer);
            }
        }, onOk: null, connection: null, cancellationToken).ConfigureAwait(false);
        return new PublishResult(ReadString(ok, "channel") ?? channel, ReadInt64(ok, "seq"));
    }

    /// <summary>
    /// Subscribes to a channel, or to a pattern (<c>chat/+</c>, <c>devices/#</c>: live messages only). Messages go to
    /// <paramref name="handler"/> and to <see cref="RelaySubscription.ReadAllAsync"/>. One subscription per channel or
    /// pattern at a time.
    /// </summary>
    /// <param name="channelOrPattern">The channel name or MQTT-style pattern.</param>
    /// <param name="handler">Called for each message on the client's receive loop (keep it short; never wait on a request from it); exceptions it throws are swallowed.</param>
    /// <param name="cancellationToken">Cancels waiting for the server's reply.</param>
    /// <returns>The subscription, once the server confirmed it.</returns>
    /// <exception cref="RelayClientException">The server refused it (e.g. 40300, 40002).</exception>
    /// <exception cref="InvalidOperationException">Already subscribed to <paramref name="channelOrPattern"/>.</exception>
    public async Task<RelaySubscription> SubscribeAsync(string channelOrPattern, Action<RelayMessage>? handler = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(channelOrPattern);
        ObjectDisposedException.ThrowIf(IsDisposing, this);
        var subscription = new RelaySubscription(this, channelOrPattern, handler, _options.SubscriptionBufferCapacity);
        if (!_subscriptions.TryAdd(channelOrPattern, subscription))
        {
            throw new InvalidOperationException($"Already subscribed to '{channelOrPattern}': use that subscription, or unsubscribe first.");
        }

        if (subscription.IsPattern)
        {
            Interlocked.Increment(ref _patternCount);
        }

        try
        {
            await RequestAsync("subscribe", writer => writer.WriteString("channel", channelOrPattern), subscription.OnSubscribed, connection: null, cancellationToken).ConfigureAwait(false);
            return subscription;
        }
        catch
        {
            Forget(subscription);
            subscription.Complete();
            throw;
        }
    }

    /// <summary>Closes the connection, stops reconnecting and every background loop, and ends every subscription's <see cref="RelaySubscription.ReadAllAsync"/>.</summary>
    /// <returns>A task that completes when everything has stopped.</returns>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        ClientConnection? current;
        lock (_gate)
        {
            current = _current;
        }

        if (current is not null)
        {
            await current.CloseAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        }

        await _lifetime.CancelAsync().ConfigureAwait(false);
        try
        {
            await _supervisor.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Stopped by the cancellation above.
        }

        var disposed = new ObjectDisposedException(nameof(RelayClient));
        Close(error: null, disposed);
        _invoker.Dispose();
        _lifetime.Dispose();
    }

    /// <summary>Test hook: aborts the current WebSocket as a network failure would, so the client reconnects.</summary>
    internal void AbortConnection()
    {
        lock (_gate)
        {
            _current?.Abort();
        }
    }

    internal async Task UnsubscribeAsync(RelaySubscription subscription, CancellationToken cancellationToken)
    {
        if (!Forget(subscription))
        {
            return;
        }

        subscription.Complete();
        ClientConnection? current;
        lock (_gate)
        {
            current = _current;
        }

        if (current is null || IsDisposing)
        {
            // Not connected: the next connection will not subscribe again.
            return;
        }

        try
        {
            await RequestAsync("unsubscribe", writer => writer.WriteString("channel", subscription.Channel), onOk: null, current, cancellationToken).ConfigureAwait(false);
        }
        catch (RelayClientException ex) when (ex.Code == RelayClientException.ConnectionLost)
        {
            // The connection went away, and with it the server's subscription.
        }
    }

    private static TaskCompletionSource<ClientConnection> NewConnectedSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private static string? ReadString(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static long ReadInt64(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var number) ? number : 0;

    private bool Forget(RelaySubscription subscription)
    {
        if (!_subscriptions.TryRemove(new KeyValuePair<string, RelaySubscription>(subscription.Channel, subscription)))
        {
            return false;
        }

        if (subscription.IsPattern)
        {
            Interlocked.Decrement(ref _patternCount);
        }

        return true;
    }

    private void SetState(RelayConnectionState state, Exception? error)
    {
        RelayConnectionState previous;
        lock (_gate)
        {
            previous = _state;
            if (previous == state || previous == RelayConnectionState.Closed)
            {
                return;
            }

            _state = state;
        }

        try
        {
            StateChanged?.Invoke(this, new RelayConnectionStateChangedEventArgs(previous, state, error));
        }
#pragma warning disable CA1031 // A subscriber's bug must not stop the connection loop.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    /// <summary>Closed for good: requests fail with <paramref name="requestError"/>, subscriptions end (with <paramref name="error"/>).</summary>
    private void Close(Exception? error, Exception requestError)
    {
        SetState(RelayConnectionState.Closed, error);
        lock (_gate)
        {
            if (!_connected.TrySetException(requestError))
            {
                _connected = NewConnectedSignal();
                _connected.SetException(requestError);
            }
        }

        foreach (var (_, subscription) in _subscriptions)
        {
            if (Forget(subscription))
            {
                subscription.Complete(error);
            }
        }

        foreach (var (_, pending) in _pending)
        {
            pending.Fail(requestError);
        }
    }
}

using System.Buffers;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace Relay.Client;

/// <summary>Opening connections, the receive loop, keepalive, token renewal and reconnection.</summary>
public sealed partial class RelayClient
{
    private const string SubProtocol = "relay.v1.json";

    /// <summary>Used when the <c>connected</c> frame has no <c>heartbeatMs</c>: the server's documented default.</summary>
    private static readonly TimeSpan DefaultHeartbeat = TimeSpan.FromSeconds(15);

    /// <summary>A connection that lived this long resets the backoff; one that drops sooner keeps backing off.</summary>
    private static readonly TimeSpan StableConnection = TimeSpan.FromSeconds(10);

    /// <summary>Renew a token this long before it expires (or after 80% of its remaining life, if sooner).</summary>
    private static readonly TimeSpan TokenRenewalLead = TimeSpan.FromSeconds(30);

    private static readonly byte[] PingFrame = """{"type":"ping"}"""u8.ToArray();

    private Uri ConnectUri()
    {
        var query = new StringBuilder(CurrentEndpoint.Query.TrimStart('?'));
        void Add(string name, string value) => query.Append(query.Length == 0 ? string.Empty : "&").Append(name).Append('=').Append(Uri.EscapeDataString(value));
        if (!string.IsNullOrEmpty(_options.Key))
        {
            Add("key", _options.Key);
            if (!string.IsNullOrEmpty(_options.ClientId))
            {
                Add("clientId", _options.ClientId);
            }
        }
        else if (_token is { } token)
        {
            Add("token", token);
        }

        return new UriBuilder(CurrentEndpoint) { Query = query.ToString() }.Uri;
    }

    /// <summary>Opens a WebSocket and reads the <c>connected</c> frame; returns any objects batched after it.</summary>
    private async Task<(ClientConnection Connection, JsonElement[] Early)> OpenAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _lifetime.Token);
        timeout.CancelAfter(_options.RequestTimeout);
        var socket = new ClientWebSocket();
        socket.Options.AddSubProtocol(SubProtocol);
        socket.Options.CollectHttpResponseDetails = true;
        try
        {
            await socket.ConnectAsync(ConnectUri(), _invoker, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is WebSocketException or HttpRequestException)
        {
            var status = (int)socket.HttpStatusCode;
            socket.Dispose();
            throw _upgradeErrors.TakeLastError() is { } refused
                ? new RelayClientException(refused.Code, refused.Message, ex)
                : status >= 400
                    ? new RelayClientException(status * 100, $"the server refused the connection with HTTP {status}", ex)
                    : new RelayClientException(RelayClientException.ConnectionLost, $"could not connect to {CurrentEndpoint}: {ex.Message}", ex);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && !_lifetime.IsCancellationRequested)
        {
            socket.Dispose();
            throw new TimeoutException($"could not connect to {CurrentEndpoint} within {_options.RequestTimeout}");
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        var connection = new ClientConnection(socket);
        try
        {
            var buffer = new ArrayBufferWriter<byte>(4096);
            if (!await connection.ReceiveAsync(buffer, timeout.Token).ConfigureAwait(false))
            {
                throw new RelayClientException(RelayClientException.ConnectionLost, $"the server closed the connection before 'connected' ({connection.CloseDescription})");
            }

            var frames = ParseFrame(buffer.WrittenSpan);
            var first = frames.Length > 0 ? frames[0] : default;
            var type = first.ValueKind == JsonValueKind.Object ? ReadString(first, "type") : null;
            if (type is "error" or "disconnect")
            {
                throw ErrorFrom(first);
            }

            if (type != "connected")
            {
                throw new RelayClientException(50000, "the server's first frame was not 'connected': " + Encoding.UTF8.GetString(buffer.WrittenSpan));
            }

            connection.ConnectionId = ReadString(first, "connectionId") ?? string.Empty;
            connection.ClientId = ReadString(first, "clientId");
            var heartbeatMs = ReadInt64(first, "heartbeatMs");
            connection.Heartbeat = heartbeatMs > 0 ? TimeSpan.FromMilliseconds(heartbeatMs) : DefaultHeartbeat;
            return (connection, frames[1..]);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && !_lifetime.IsCancellationRequested)
        {
            connection.Abort();
            connection.Dispose();
            throw new TimeoutException($"no 'connected' frame from {CurrentEndpoint} within {_options.RequestTimeout}");
        }
        catch (Exception ex) when (ex is WebSocketException or JsonException or RelayClientException)
        {
            connection.Abort();
            connection.Dispose();
            throw ex is RelayClientException ? ex : new RelayClientException(RelayClientException.ConnectionLost, "the connection failed before 'connected': " + ex.Message, ex);
        }
    }

    /// <summary>Runs connections one after the other until disposed or refused for good.</summary>
    private async Task SuperviseAsync(ClientConnection connection, JsonElement[] early)
    {
        var attempt = 0;
        try
        {
            while (true)
            {
                var started = Environment.TickCount64;
                Drop drop;
                try
                {
                    drop = await RunConnectionAsync(connection, early).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !_lifetime.IsCancellationRequested)
                {
                    // Whatever went wrong with this connection, the next one starts clean.
                    drop = new Drop(ex, Reconnect: true);
                }

                if (IsDisposing)
                {
                    return;
                }

                if (!drop.Reconnect)
                {
                    Close(drop.Error, drop.Error ?? new RelayClientException(RelayClientException.ConnectionLost, "the server closed the connection"));
                    return;
                }

                if (TimeSpan.FromMilliseconds(Environment.TickCount64 - started) >= StableConnection)
                {
                    attempt = 0;
                }

                SetState(RelayConnectionState.Reconnecting, drop.Error);
                var reconnected = await ReconnectAsync(attempt).ConfigureAwait(false);
                if (reconnected is null)
                {
                    return;
                }

                (connection, early, attempt) = reconnected.Value;
            }
        }
        catch (OperationCanceledException) when (_lifetime.IsCancellationRequested)
        {
            // Disposed.
        }
    }

    /// <summary>Backs off and retries until a connection opens; <c>null</c> when refused for good (or disposed).</summary>
    private async Task<(ClientConnection, JsonElement[], int)?> ReconnectAsync(int attempt)
    {
        while (true)
        {
            await Task.Delay(Backoff(attempt++), _lifetime.Token).ConfigureAwait(false);
            try
            {
                if (_options.TokenProvider is { } provider)
                {
                    _token = await provider(_lifetime.Token).ConfigureAwait(false);
                }

                var (connection, early) = await OpenAsync(_lifetime.Token).ConfigureAwait(false);
                return (connection, early, attempt);
            }
            catch (RelayClientException ex) when (ex.Code is >= 40100 and < 40400 && _options.TokenProvider is null)
            {
                // The credentials were refused and cannot change by themselves: retrying would hammer the server.
                Close(ex, ex);
                return null;
            }
            catch (Exception) when (!_lifetime.IsCancellationRequested)
            {
                // Unreachable, timed out, or the token provider failed: back off and try again, on the next node if
                // there are others.
                Volatile.Write(ref _endpointIndex, (_endpointIndex + 1) % _endpoints.Length);
            }
        }
    }

    private TimeSpan Backoff(int attempt)
    {
        // Full jitter between the minimum and an exponentially growing ceiling, so clients dropped together spread out.
        var min = _options.MinReconnectDelay.TotalMilliseconds;
        var ceiling = Math.Min(_options.MaxReconnectDelay.TotalMilliseconds, min * Math.Pow(2, Math.Min(attempt, 30)));
        return TimeSpan.FromMilliseconds(min + (Random.Shared.NextDouble() * (ceiling - min)));
    }

    /// <summary>Runs one connection until it drops: receive loop, keepalive, token renewal, re-subscription.</summary>
    private async Task<Drop> RunConnectionAsync(ClientConnection connection, JsonElement[] early)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(_lifetime.Token);

        // Taken before requests may go out on this connection, so only subscriptions from earlier connections are resumed.
        var resume = new List<RelaySubscription>();
        foreach (var (_, subscription) in _subscriptions)
        {
            if (subscription.IsActive)
            {
                resume.Add(subscription);
            }
        }

        lock (_gate)
        {
            _current = connection;
            _connectionId = connection.ConnectionId;
            _clientId = connection.ClientId;
            _connected.TrySetResult(connection);
        }

        SetState(RelayConnectionState.Connected, null);
        var background = new List<Task> { KeepAliveAsync(connection, stop.Token) };
        if (_options.TokenProvider is not null)
        {
            background.Add(RenewTokenAsync(connection, stop.Token));
        }

        if (resume.Count > 0)
        {
            background.Add(ResubscribeAsync(connection, resume, stop.Token));
        }

        try
        {
            return await ReceiveLoopAsync(connection, early, stop.Token).ConfigureAwait(false);
        }
        finally
        {
            lock (_gate)
            {
                _current = null;
                if (_connected.Task.IsCompletedSuccessfully)
                {
                    _connected = NewConnectedSignal();
                }
            }

            await connection.CloseAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
            connection.Abort();
            await stop.CancelAsync().ConfigureAwait(false);
            var lost = new RelayClientException(RelayClientException.ConnectionLost, "the connection was lost before the server replied");
            foreach (var (_, pending) in _pending)
            {
                if (pending.Connection == connection)
                {
                    pending.Fail(lost);
                }
            }

            await Task.WhenAll(background).ConfigureAwait(false);
            connection.Dispose();
        }
    }

    private async Task<Drop> ReceiveLoopAsync(ClientConnection connection, JsonElement[] early, CancellationToken cancellationToken)
    {
        foreach (var frame in early)
        {
            if (Dispatch(connection, frame) is { } drop)
            {
                return drop;
            }
        }

        var buffer = new ArrayBufferWriter<byte>(4096);
        while (true)
        {
            try
            {
                if (!await connection.ReceiveAsync(buffer, cancellationToken).ConfigureAwait(false))
                {
                    var reason = connection.CloseDescription is { } close ? "the server closed the connection: " + close : "the server closed the connection";
                    return new Drop(new RelayClientException(RelayClientException.ConnectionLost, reason), Reconnect: true);
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return new Drop(null, Reconnect: true);
            }
            catch (Exception ex) when (ex is WebSocketException or ObjectDisposedException or OperationCanceledException or IOException)
            {
                // An aborted socket fails a pending receive with OperationCanceledException: a drop like any other.
                return new Drop(ex, Reconnect: true);
            }

            JsonElement[] frames;
            try
            {
                frames = ParseFrame(buffer.WrittenSpan);
            }
            catch (JsonException)
            {
                // Not JSON: nothing in it can be acted on, and the connection itself is fine.
                continue;
            }

            foreach (var frame in frames)
            {
                if (Dispatch(connection, frame) is { } drop)
                {
                    return drop;
                }
            }
        }
    }

    /// <summary>Pings every heartbeat; when nothing at all arrived for two heartbeats the connection is dead: abort it, which reconnects.</summary>
    private static async Task KeepAliveAsync(ClientConnection connection, CancellationToken cancellationToken)
    {
        try
        {
            while (true)
            {
                await Task.Delay(connection.Heartbeat, cancellationToken).ConfigureAwait(false);
                if (connection.SinceLastReceived > connection.Heartbeat * 2)
                {
                    connection.Abort();
                    return;
                }

                await connection.SendAsync(PingFrame, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or WebSocketException or ObjectDisposedException)
        {
            // The connection ended.
        }
    }

    /// <summary>Sends a fresh token in-band shortly before the current one expires, so the connection is never cut for expiry.</summary>
    private async Task RenewTokenAsync(ClientConnection connection, CancellationToken cancellationToken)
    {
        try
        {
            while (Tokens.ExpiresAt(_token) is { } expiresAt)
            {
                var remaining = expiresAt - DateTimeOffset.UtcNow;
                if (remaining <= TimeSpan.Zero)
                {
                    return;
                }

                var lead = TimeSpan.FromTicks(Math.Min(TokenRenewalLead.Ticks, remaining.Ticks / 5));
                var wait = remaining - lead;
                if (wait > TimeSpan.FromDays(1))
                {
                    // Task.Delay has an upper bound; a long-lived token is simply looked at again tomorrow.
                    await Task.Delay(TimeSpan.FromDays(1), cancellationToken).ConfigureAwait(false);
                    continue;
                }

                await Task.Delay(wait, cancellationToken).ConfigureAwait(false);
                var token = await _options.TokenProvider!(cancellationToken).ConfigureAwait(false);
                if (Tokens.ExpiresAt(token) is not { } next || next <= expiresAt)
                {
                    // Nothing better to offer: the server will disconnect with 40142 and the reconnection asks again.
                    return;
                }

                await RequestAsync("auth", writer => writer.WriteString("token", token), onOk: null, connection, cancellationToken).ConfigureAwait(false);
                _token = token;
            }
        }
#pragma warning disable CA1031 // Renewal is an optimisation: on any failure the server's 40142 disconnect and a reconnection with a new token take over.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    /// <summary>Subscribes again on a new connection, resuming channels from their last seq.</summary>
    private async Task ResubscribeAsync(ClientConnection connection, List<RelaySubscription> subscriptions, CancellationToken cancellationToken)
    {
        var tasks = new Task[subscriptions.Count];
        for (var i = 0; i < tasks.Length; i++)
        {
            tasks[i] = ResubscribeAsync(connection, subscriptions[i], cancellationToken);
        }

        await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    private async Task ResubscribeAsync(ClientConnection connection, RelaySubscription subscription, CancellationToken cancellationToken)
    {
        var since = subscription.ResumePosition();
        try
        {
            await RequestAsync("subscribe", writer =>
            {
                writer.WriteString("channel", subscription.Channel);
                if (since is { } position)
                {
                    writer.WriteStartObject("since");
                    writer.WriteString("epoch", position.Epoch);
                    writer.WriteNumber("seq", position.Seq);
                    writer.WriteEndObject();
                }
            }, subscription.OnResubscribed, connection, cancellationToken).ConfigureAwait(false);
        }
        catch (RelayClientException ex) when (ex.Code != RelayClientException.ConnectionLost)
        {
            // Refused now (e.g. the new token no longer allows it): end the subscription with the reason.
            if (Forget(subscription))
            {
                subscription.Complete(ex);
            }
        }
#pragma warning disable CA1031 // Lost connection or timeout: the next connection subscribes again.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    private static JsonElement[] ParseFrame(ReadOnlySpan<byte> utf8)
    {
        var reader = new Utf8JsonReader(utf8);
        var root = JsonElement.ParseValue(ref reader);
        if (root.ValueKind != JsonValueKind.Array)
        {
            return [root];
        }

        var frames = new JsonElement[root.GetArrayLength()];
        var i = 0;
        foreach (var item in root.EnumerateArray())
        {
            frames[i++] = item;
        }

        return frames;
    }

    private static RelayClientException ErrorFrom(JsonElement frame)
    {
        var code = frame.TryGetProperty("code", out var value) && value.TryGetInt32(out var number) ? number : 50000;
        return new RelayClientException(code, ReadString(frame, "message") ?? "error " + code);
    }

    /// <summary>Why a connection ended, and whether to reconnect.</summary>
    private readonly record struct Drop(Exception? Error, bool Reconnect);
}

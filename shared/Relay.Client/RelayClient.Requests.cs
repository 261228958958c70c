using System.Buffers;
using System.Net.WebSockets;
using System.Text.Json;

namespace Relay.Client;

/// <summary>Requests matched to replies by <c>ref</c>, and dispatch of server frames.</summary>
public sealed partial class RelayClient
{
    /// <summary>
    /// Sends a request on <paramref name="connection"/> (or on the next connection, waiting for it) and waits for its
    /// <c>ok</c>; an <c>error</c> throws <see cref="RelayClientException"/>. The whole wait is bounded by the request timeout.
    /// </summary>
    private async Task<JsonElement> RequestAsync(string type, Action<Utf8JsonWriter> body, Action<JsonElement>? onOk, ClientConnection? connection, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(IsDisposing, this);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _lifetime.Token);
        timeout.CancelAfter(_options.RequestTimeout);
        var reference = Interlocked.Increment(ref _nextRef);
        try
        {
            if (connection is null)
            {
                Task<ClientConnection> connected;
                lock (_gate)
                {
                    connected = _connected.Task;
                }

                connection = await connected.WaitAsync(timeout.Token).ConfigureAwait(false);
            }

            var pending = new PendingRequest(connection, onOk);
            _pending[reference] = pending;
            await connection.SendAsync(EncodeRequest(type, reference, body), timeout.Token).ConfigureAwait(false);
            return await pending.Reply.WaitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && !_lifetime.IsCancellationRequested)
        {
            throw new TimeoutException($"no reply to '{type}' within {_options.RequestTimeout}");
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new ObjectDisposedException(nameof(RelayClient));
        }
        catch (Exception ex) when (ex is WebSocketException or ObjectDisposedException && !IsDisposing)
        {
            throw new RelayClientException(RelayClientException.ConnectionLost, "the connection was lost before the server replied", ex);
        }
        finally
        {
            _pending.TryRemove(reference, out _);
        }
    }

    private static ReadOnlyMemory<byte> EncodeRequest(string type, long reference, Action<Utf8JsonWriter> body)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("type", type);
            writer.WriteNumber("ref", reference);
            body(writer);
            writer.WriteEndObject();
        }

        return buffer.WrittenMemory;
    }

    /// <summary>Acts on one server object; returns a <see cref="Drop"/> when it ends the connection.</summary>
    private Drop? Dispatch(ClientConnection connection, JsonElement frame)
    {
        if (frame.ValueKind != JsonValueKind.Object)
        {
            return null;
        }

        switch (ReadString(frame, "type"))
        {
            case "message":
                Route(frame);
                return null;
            case "ok":
            case "pong":
                if (TakePending(frame, connection) is { } pending)
                {
                    var reply = frame.Clone();
                    try
                    {
                        pending.OnOk?.Invoke(reply);
                    }
                    finally
                    {
                        pending.Complete(reply);
                    }
                }

                return null;
            case "error":
                TakePending(frame, connection)?.Fail(ErrorFrom(frame));
                return null;
            case "disconnect":
                var error = ErrorFrom(frame);
                var reconnect = frame.TryGetProperty("reconnect", out var flag)
                    ? flag.ValueKind == JsonValueKind.True
                    : error.Code >= 50000;
                return new Drop(error, reconnect);
            default:
                // "connected", "presence" and anything newer: nothing to do here.
                return null;
        }
    }

    private PendingRequest? TakePending(JsonElement frame, ClientConnection connection) =>
        frame.TryGetProperty("ref", out var reference)
        && reference.ValueKind == JsonValueKind.Number
        && reference.TryGetInt64(out var number)
        && _pending.TryGetValue(number, out var pending)
        && pending.Connection == connection
            ? pending
            : null;

    private void Route(JsonElement frame)
    {
        var channel = ReadString(frame, "channel");
        if (channel is null)
        {
            return;
        }

        var message = new RelayMessage
        {
            Channel = channel,
            Seq = ReadInt64(frame, "seq"),
            Epoch = ReadString(frame, "epoch"),
            Id = ReadString(frame, "id"),
            Name = ReadString(frame, "name"),
            Data = frame.TryGetProperty("data", out var data) ? data.Clone() : default,
            ClientId = ReadString(frame, "clientId"),
            Timestamp = DateTimeOffset.FromUnixTimeMilliseconds(Math.Clamp(ReadInt64(frame, "timestamp"), 0, 253402300799999)),
            Encoding = ReadString(frame, "encoding"),
        };

        if (_subscriptions.TryGetValue(channel, out var exact) && !exact.IsPattern)
        {
            exact.Deliver(message);
        }

        if (Volatile.Read(ref _patternCount) > 0)
        {
            foreach (var (_, subscription) in _subscriptions)
            {
                if (subscription.IsPattern && Topics.Matches(subscription.Channel, channel))
                {
                    subscription.Deliver(message);
                }
            }
        }
    }
}

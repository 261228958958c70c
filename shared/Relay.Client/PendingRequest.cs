using System.Text.Json;

namespace Relay.Client;

/// <summary>A request waiting for its <c>ok</c>/<c>error</c>. <see cref="OnOk"/> runs on the receive loop, in order with messages.</summary>
internal sealed class PendingRequest(ClientConnection connection, Action<JsonElement>? onOk)
{
    private readonly TaskCompletionSource<JsonElement> _reply = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public ClientConnection Connection { get; } = connection;

    public Action<JsonElement>? OnOk { get; } = onOk;

    public Task<JsonElement> Reply => _reply.Task;

    public void Complete(JsonElement reply) => _reply.TrySetResult(reply);

    public void Fail(Exception error) => _reply.TrySetException(error);
}

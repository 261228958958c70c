namespace Relay.Redis.Internal;

/// <summary>A command written (or about to be) whose reply is awaited; replies match these in FIFO order.</summary>
internal sealed class PendingCommand(string command, long deadline, long started = 0)
    : TaskCompletionSource<RedisValue>(TaskCreationOptions.RunContinuationsAsynchronously)
{
    public string Command { get; } = command;

    /// <summary>In <see cref="Environment.TickCount64"/> milliseconds.</summary>
    public long Deadline { get; } = deadline;

    /// <summary>The call's <see cref="System.Diagnostics.Stopwatch.GetTimestamp"/>, or 0 when the round trip is not timed.</summary>
    public long Started { get; } = started;

    public void Complete(in RedisValue reply)
    {
        if (reply.IsError)
        {
            TrySetException(new RedisServerException(Command, reply.ErrorMessage!, null));
        }
        else
        {
            TrySetResult(reply);
        }
    }
}

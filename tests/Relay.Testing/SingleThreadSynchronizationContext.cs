using System.Collections.Concurrent;

namespace Relay.Testing;

/// <summary>
/// A synchronisation context with one thread of its own, as a UI app's or a blocking test's: what is posted to it runs
/// in order on that thread, and waits while that thread is blocked. Tests start a server from it to prove that no
/// server work comes back to the embedder's context.
/// </summary>
public sealed class SingleThreadSynchronizationContext : SynchronizationContext, IDisposable
{
    private readonly BlockingCollection<(SendOrPostCallback Callback, object? State)> _queue = new();
    private readonly Thread _thread;
    private int _posted;

    public SingleThreadSynchronizationContext()
    {
        _thread = new Thread(RunQueue) { IsBackground = true, Name = "single-thread synchronisation context" };
        _thread.Start();
    }

    /// <summary>How many callbacks were posted to the context so far.</summary>
    public int Posted => Volatile.Read(ref _posted);

    /// <inheritdoc />
    public override void Post(SendOrPostCallback d, object? state)
    {
        Interlocked.Increment(ref _posted);
        try
        {
            _queue.Add((d, state));
        }
        catch (InvalidOperationException)
        {
            // Disposed: what still comes runs on the thread pool rather than never.
            ThreadPool.QueueUserWorkItem(s => d(s), state, preferLocal: false);
        }
    }

    /// <inheritdoc />
    public override void Send(SendOrPostCallback d, object? state)
    {
        if (Environment.CurrentManagedThreadId == _thread.ManagedThreadId)
        {
            d(state);
            return;
        }

        using var done = new ManualResetEventSlim();
        Post(_ => { try { d(state); } finally { done.Set(); } }, null);
        done.Wait();
    }

    /// <inheritdoc />
    public override SynchronizationContext CreateCopy() => this;

    /// <summary>
    /// Runs <paramref name="function"/> on the context's thread, as an async method called there (its own awaits come
    /// back to that thread), and completes with its result.
    /// </summary>
    public Task<T> RunAsync<T>(Func<Task<T>> function)
    {
        var result = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Post(async _ =>
        {
            try
            {
                result.SetResult(await function());
            }
            catch (Exception ex)
            {
                result.SetException(ex);
            }
        }, null);
        return result.Task;
    }

    /// <summary>
    /// Blocks the context's thread, as a test method waiting synchronously on it does, until the returned handle is
    /// disposed (or <paramref name="timeout"/> passes): what is posted meanwhile waits.
    /// </summary>
    public IDisposable Block(TimeSpan timeout)
    {
        var gate = new ManualResetEventSlim();
        Post(_ => gate.Wait(timeout), null);
        return new Unblock(gate);
    }

    /// <summary>Ends the context's thread once what was posted before has run.</summary>
    public void Dispose()
    {
        _queue.CompleteAdding();
        _thread.Join(TimeSpan.FromSeconds(30));
    }

    private void RunQueue()
    {
        SetSynchronizationContext(this);
        foreach (var (callback, state) in _queue.GetConsumingEnumerable())
        {
            callback(state);
        }
    }

    private sealed class Unblock(ManualResetEventSlim gate) : IDisposable
    {
        public void Dispose() => gate.Set();
    }
}

using System.ComponentModel;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;

namespace Relay.Testing;

/// <summary>
/// An external process a test drives (a Node script, a mosquitto client, …) with its output lines as they come, from
/// standard output and standard error: a test waits for a line that matches, and a wait that fails says what the process
/// printed last and whether it is still running. Disposing it kills the process and every process it started, by PID.
/// </summary>
public class LineProcess : IDisposable
{
    /// <summary>
    /// Lines kept for <see cref="Output"/>, and lines waiting to be read, at the most; past it the oldest go, and
    /// <see cref="Output"/> and failure messages say how many. The busiest caller (mosquitto_sub -d in
    /// MqttSharedSubscriptionTests) prints about 6,000.
    /// </summary>
    public const int DefaultMaxLines = 100_000;

    /// <summary>The lines a failure message shows: what the process did last, short enough to read.</summary>
    private const int LinesInMessages = 100;

    /// <summary>Dispose waits this long for a killed process to be gone, so that nothing outlives its test.</summary>
    private static readonly TimeSpan KillWait = TimeSpan.FromSeconds(10);

    private readonly Process _process;
    private readonly string _command;
    private readonly int _maxLines;
    private readonly Channel<Line> _unread;
    private readonly Queue<string> _kept = new();
    private long _keptDropped;
    private long _unreadDropped;
    private int _streamsEnded;
    private int _disposed;

    /// <summary>
    /// Starts <paramref name="start"/> with its standard output and error redirected (standard input as it says);
    /// <paramref name="install"/> says what to install when it cannot start.
    /// </summary>
    public LineProcess(ProcessStartInfo start, string? install = null, int maxLines = DefaultMaxLines)
    {
        ArgumentNullException.ThrowIfNull(start);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLines, 1);
        start.UseShellExecute = false;
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        _maxLines = maxLines;
        _command = Describe(start);
        _unread = Channel.CreateBounded<Line>(
            new BoundedChannelOptions(maxLines) { FullMode = BoundedChannelFullMode.DropOldest },
            _ => Interlocked.Increment(ref _unreadDropped));
        try
        {
            _process = Process.Start(start) ?? throw new InvalidOperationException($"{_command} did not start");
        }
        catch (Win32Exception ex)
        {
            throw new InvalidOperationException($"{_command} did not start ({ex.Message}){(install is null ? "" : ": " + install)}", ex);
        }

        _process.OutputDataReceived += (_, e) => Add(e.Data, error: false);
        _process.ErrorDataReceived += (_, e) => Add(e.Data, error: true);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public int Id => _process.Id;

    /// <summary>Everything it printed so far (standard error lines marked <c>stderr: </c>), for counts and failure messages.</summary>
    public string Output
    {
        get
        {
            lock (_kept)
            {
                var all = string.Join('\n', _kept);
                return _keptDropped == 0 ? all : $"({_keptDropped} earlier lines left out)\n{all}";
            }
        }
    }

    /// <summary>The last <paramref name="count"/> lines it printed, for failure messages.</summary>
    public string LastLines(int count)
    {
        lock (_kept)
        {
            var skipped = _kept.Count - count;
            var lines = string.Join('\n', skipped > 0 ? _kept.Skip(skipped) : _kept);
            var earlier = _keptDropped + Math.Max(skipped, 0);
            return earlier == 0 ? lines : $"({earlier} earlier lines left out)\n{lines}";
        }
    }

    /// <summary>
    /// The next line (of either stream, as printed) matching <paramref name="match"/>, skipping others. Fails with a
    /// <see cref="TimeoutException"/> naming <paramref name="what"/> after <paramref name="timeout"/>, or as soon as the
    /// process's output ends.
    /// </summary>
    public async Task<string> WaitForLineAsync(Func<string, bool> match, TimeSpan timeout, string what)
    {
        var line = await NextAsync(line => match(line.Text), timeout, what);
        return line.Text;
    }

    /// <summary>
    /// The next JSON object printed on standard output matching <paramref name="match"/>, skipping other lines (and
    /// lines that are not JSON); fails as <see cref="WaitForLineAsync"/> does.
    /// </summary>
    public async Task<JsonElement> NextJsonAsync(Func<JsonElement, bool> match, TimeSpan timeout, string what)
    {
        JsonElement found = default;
        await NextAsync(line =>
        {
            if (line.Error || !line.Text.StartsWith('{'))
            {
                return false;
            }

            JsonElement element;
            try
            {
                element = JsonDocument.Parse(line.Text).RootElement;
            }
            catch (JsonException)
            {
                return false;
            }

            found = element;
            return match(element);
        }, timeout, what);
        return found;
    }

    /// <summary>Waits for the process to exit and returns its exit code; fails with its last lines after <paramref name="timeout"/>.</summary>
    public async Task<int> ExitAsync(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            throw new TimeoutException($"{_command} did not exit within {timeout}; {Tail()}");
        }

        return _process.ExitCode;
    }

    /// <summary>Writes one line to its standard input (started with <see cref="ProcessStartInfo.RedirectStandardInput"/>).</summary>
    public void WriteLine(string line)
    {
        _process.StandardInput.WriteLine(line);
        _process.StandardInput.Flush();
    }

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing)
    {
        if (!disposing || Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        try
        {
            // The whole tree: node and stdbuf'd clients may have started children that would hold the pipes open.
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(KillWait);
        }
        catch (InvalidOperationException)
        {
            // Exited meanwhile.
        }

        _process.Dispose();
    }

    private static string Describe(ProcessStartInfo start)
    {
        var command = new StringBuilder(start.FileName);
        foreach (var argument in start.ArgumentList)
        {
            command.Append(' ').Append(argument);
        }

        return command.Length <= 160 ? command.ToString() : command.ToString(0, 160) + "…";
    }

    private async Task<Line> NextAsync(Func<Line, bool> match, TimeSpan timeout, string what)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                var line = await _unread.Reader.ReadAsync(cancel.Token);
                if (match(line))
                {
                    return line;
                }
            }
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
            throw new TimeoutException($"no {what} within {timeout} from {_command} ({State()}); {Tail()}");
        }
        catch (ChannelClosedException)
        {
            throw new TimeoutException($"no {what} from {_command}: its output ended ({State(TimeSpan.FromSeconds(5))}); {Tail()}");
        }
    }

    private string State(TimeSpan wait = default)
    {
        if (Volatile.Read(ref _disposed) == 1)
        {
            return "killed when disposed";
        }

        try
        {
            return _process.WaitForExit(wait) ? $"exited with code {_process.ExitCode}" : "still running";
        }
        catch (InvalidOperationException)
        {
            return "killed when disposed";
        }
    }

    private string Tail()
    {
        var unreadDropped = Interlocked.Read(ref _unreadDropped);
        var dropped = unreadDropped == 0 ? "" : $" ({unreadDropped} lines went unread: more than {_maxLines} waited at once)";
        return $"last lines{dropped}:\n{LastLines(LinesInMessages)}";
    }

    private void Add(string? text, bool error)
    {
        if (text is null)
        {
            // Standard output and error both ended: the process is done.
            if (Interlocked.Increment(ref _streamsEnded) == 2)
            {
                _unread.Writer.TryComplete();
            }

            return;
        }

        // One lock for both, so waiters and Output see the lines in the same order.
        lock (_kept)
        {
            _kept.Enqueue(error ? "stderr: " + text : text);
            if (_kept.Count > _maxLines)
            {
                _kept.Dequeue();
                _keptDropped++;
            }

            _unread.Writer.TryWrite(new Line(text, error));
        }
    }

    private readonly record struct Line(string Text, bool Error);
}

using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Relay.Bench.Targets;

namespace Relay.Bench.Scenarios;

/// <summary>The parent's handle on one soak client process (<see cref="SoakClient"/>): its lines in, its commands out.</summary>
internal sealed class SoakChild : IDisposable
{
    private readonly Process _process;
    private readonly int _number;
    private readonly Progress _progress;
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<SoakClientReport> _result = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _reading;
    private SoakClientStatus? _status;

    private SoakChild(Process process, int number, Progress progress)
    {
        _process = process;
        _number = number;
        _progress = progress;
        _reading = ReadAsync();
    }

    /// <summary>The last <c>status</c> line, or null before the first.</summary>
    public SoakClientStatus? Status => Volatile.Read(ref _status);

    public bool HasExited => _process.HasExited;

    public static SoakChild Start(Target target, Uri uri, SoakSpec spec, int number, int firstIndex, int count, Progress progress)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(typeof(SoakChild).Assembly.Location);
        var churn = spec.ChurnPerSecond * count / spec.Connections;
        foreach (var argument in new[]
        {
            "soak-client", "--target", target.Name, "--uri", uri.ToString(), "--count", Invariant(count), "--child", Invariant(number),
            "--first", Invariant(firstIndex), "--channels", Invariant(spec.Channels), "--churn", churn.ToString("R", CultureInfo.InvariantCulture),
        })
        {
            info.ArgumentList.Add(argument);
        }

        progress.Say($"client process {number}: {count:N0} connections, {churn:0.#} reconnects a second");
        return new SoakChild(Process.Start(info) ?? throw new InvalidOperationException("could not start a soak client process"), number, progress);
    }

    public Task Ready => _ready.Task;

    public Task<SoakClientReport> Result => _result.Task;

    public void Send(string line)
    {
        _process.StandardInput.WriteLine(line);
        _process.StandardInput.Flush();
    }

    /// <summary>Closes its standard input (it closes its connections and exits) and waits for it.</summary>
    public async Task StopAsync()
    {
        if (!_process.HasExited)
        {
            _process.StandardInput.Close();
            try
            {
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60)).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                _progress.Say($"client process {_number} did not exit within 60 s; killing it");
                _process.Kill();
            }
        }

        await _reading.ConfigureAwait(false);
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
        }

        _process.Dispose();
    }

    private static string Invariant(int value) => value.ToString(CultureInfo.InvariantCulture);

    private async Task ReadAsync()
    {
        while (await _process.StandardOutput.ReadLineAsync().ConfigureAwait(false) is { } line)
        {
            if (line == "ready")
            {
                _ready.TrySetResult();
            }
            else if (line.StartsWith("status ", StringComparison.Ordinal))
            {
                Volatile.Write(ref _status, JsonSerializer.Deserialize<SoakClientStatus>(line[7..]));
            }
            else if (line.StartsWith("result ", StringComparison.Ordinal))
            {
                _result.TrySetResult(JsonSerializer.Deserialize<SoakClientReport>(line[7..])!);
            }
            else
            {
                _progress.Say($"client {_number}: {line}");
            }
        }

        var exit = _process.WaitForExit(1000) ? _process.ExitCode : -1;
        var ended = new InvalidOperationException($"soak client process {_number} exited (code {exit}) before it answered");
        _ready.TrySetException(ended);
        _result.TrySetException(ended);
    }
}

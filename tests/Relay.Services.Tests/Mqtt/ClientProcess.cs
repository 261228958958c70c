using System.Diagnostics;
using System.Threading.Channels;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// A third-party MQTT client run as a process (mosquitto_pub/mosquitto_sub, MQTT.js under Node): its output lines as
/// they come, killed by its PID when disposed. A missing binary fails the test and says what to install.
/// </summary>
internal sealed class ClientProcess : IDisposable
{
    private readonly Process _process;
    private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();
    private readonly List<string> _all = [];

    private ClientProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => Add(e.Data);
        process.ErrorDataReceived += (_, e) => Add(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    /// <summary>Everything it printed so far (stdout and stderr), for failure messages.</summary>
    public string Output
    {
        get
        {
            lock (_all)
            {
                return string.Join('\n', _all);
            }
        }
    }

    public static ClientProcess Mosquitto(string tool, params string[] arguments)
    {
        var path = $"/usr/bin/{tool}";
        if (!File.Exists(path))
        {
            throw new InvalidOperationException($"{path} is missing: install the Debian packages mosquitto and mosquitto-clients (apt-get install -y mosquitto mosquitto-clients; .ci/run does it)");
        }

        // Line-buffered (coreutils' stdbuf): piped, the clients' stdio would hold their output until they exit.
        var start = new ProcessStartInfo("/usr/bin/stdbuf") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add("-oL");
        start.ArgumentList.Add(path);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        return new ClientProcess(Process.Start(start) ?? throw new InvalidOperationException($"{path} did not start"));
    }

    public static ClientProcess MqttJs(params string[] arguments)
    {
        var module = Path.Combine(NodeScript.RepositoryRoot, "tests", "interop-js", "node_modules", "mqtt");
        if (!Directory.Exists(module))
        {
            throw new InvalidOperationException($"MQTT.js (npm mqtt) is missing at {module}: run 'npm ci --prefix tests/interop-js' (./test.sh does it)");
        }

        return new ClientProcess(NodeScript.Start("mqtt-client.cjs", arguments));
    }

    /// <summary>The next line containing <paramref name="text"/>, skipping others; fails after <paramref name="timeout"/>.</summary>
    public async Task<string> WaitForAsync(string text, TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                var line = await _lines.Reader.ReadAsync(cancel.Token);
                if (line.Contains(text, StringComparison.Ordinal))
                {
                    return line;
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ChannelClosedException)
        {
            throw new TimeoutException($"no line with '{text}' within {timeout}; output:\n{Output}");
        }
    }

    /// <summary>Waits for the process to exit and returns its exit code.</summary>
    public async Task<int> ExitAsync(TimeSpan timeout)
    {
        await _process.WaitForExitAsync().WaitAsync(timeout);
        return _process.ExitCode;
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
            }
        }
        catch (InvalidOperationException)
        {
            // Exited meanwhile.
        }

        _process.Dispose();
    }

    private void Add(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_all)
        {
            _all.Add(line);
        }

        _lines.Writer.TryWrite(line);
    }
}

using System.Diagnostics;
using System.Text.Json;
using System.Threading.Channels;

namespace Relay.Testing;

/// <summary>
/// A script of <c>tests/interop-pusher</c> (pusher-js, the pusher server SDK, Laravel Echo) run with Node.js: its JSON
/// lines as they come, commands written to its standard input, killed by its PID when disposed. Missing npm packages
/// fail the test and say what to run.
/// </summary>
public sealed class PusherScript : IDisposable
{
    private readonly Process _process;
    private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();
    private readonly List<string> _all = [];

    private PusherScript(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => Add(e.Data);
        process.ErrorDataReceived += (_, e) => Add(e.Data is null ? null : "stderr: " + e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public static string Folder => Path.Combine(NodeScript.RepositoryRoot, "tests", "interop-pusher");

    /// <summary>Everything it printed so far, for failure messages.</summary>
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

    /// <summary>The options every script takes: the node's port and a key (name and secret) of <paramref name="app"/>.</summary>
    public static string Options(RelayServer server, string key, object? extra = null) => Options(server.BaseAddress.Port, key, extra);

    /// <summary>The options every script takes, for a node listening on <paramref name="port"/> (a service process's).</summary>
    public static string Options(int port, string key, object? extra = null)
    {
        var colon = key.IndexOf(':', StringComparison.Ordinal);
        var name = key[..colon];
        var options = new Dictionary<string, object?>
        {
            ["port"] = port,
            ["key"] = name,
            ["secret"] = key[(colon + 1)..],
            ["appId"] = name[..name.IndexOf('.', StringComparison.Ordinal)],
        };
        if (extra is not null)
        {
            foreach (var property in JsonSerializer.SerializeToElement(extra).EnumerateObject())
            {
                if (property.Value.ValueKind == JsonValueKind.Null)
                {
                    continue;
                }

                options[property.Name] = property.Value;
            }
        }

        return JsonSerializer.Serialize(options);
    }

    public static PusherScript Start(string script, params string[] arguments)
    {
        if (!Directory.Exists(Path.Combine(Folder, "node_modules", "pusher-js")))
        {
            throw new InvalidOperationException($"the Pusher interop clients are missing: run 'npm ci --prefix {Folder}' (./test.sh does it)");
        }

        var start = new ProcessStartInfo("node") { WorkingDirectory = Folder, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        start.ArgumentList.Add(script);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        return new PusherScript(Process.Start(start) ?? throw new InvalidOperationException("node did not start: install Node.js 20 (Debian package nodejs)"));
    }

    /// <summary>Runs a one-shot script of the server SDK and returns its one result line.</summary>
    public static async Task<JsonElement> RunAsync(TimeSpan timeout, string script, params string[] arguments)
    {
        using var process = Start(script, arguments);
        var line = await process.NextAsync(_ => true, timeout);
        return line;
    }

    /// <summary>Writes one command line (serialized as JSON).</summary>
    public void Send(object command)
    {
        _process.StandardInput.WriteLine(JsonSerializer.Serialize(command));
        _process.StandardInput.Flush();
    }

    /// <summary>The next JSON line of kind <paramref name="kind"/>, skipping others; fails after <paramref name="timeout"/>.</summary>
    public Task<JsonElement> NextAsync(string kind, TimeSpan timeout, string? channel = null) =>
        NextAsync(e => e.TryGetProperty("kind", out var k) && k.GetString() == kind
            && (channel is null || (e.TryGetProperty("channel", out var c) && c.GetString() == channel)), timeout);

    /// <summary>The next JSON line matching <paramref name="match"/>, skipping others.</summary>
    public async Task<JsonElement> NextAsync(Func<JsonElement, bool> match, TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                var line = await _lines.Reader.ReadAsync(cancel.Token);
                if (!line.StartsWith('{'))
                {
                    continue;
                }

                var element = JsonDocument.Parse(line).RootElement;
                if (match(element))
                {
                    return element;
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ChannelClosedException)
        {
            throw new TimeoutException($"no matching line within {timeout}; output:\n{Output}");
        }
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
            _lines.Writer.TryComplete();
            return;
        }

        lock (_all)
        {
            _all.Add(line);
        }

        _lines.Writer.TryWrite(line);
    }
}

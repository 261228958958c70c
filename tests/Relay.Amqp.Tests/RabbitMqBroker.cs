using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace Relay.Amqp.Tests;

/// <summary>
/// A real RabbitMQ (Debian's <c>rabbitmq-server</c>) on free loopback ports, with its own node name, data, logs, config
/// and Erlang cookie in a temporary folder, stopped by the PID this class started. A missing broker fails the test:
/// these tests are the proof the bridge works against RabbitMQ. The Erlang port mapper (epmd, port 4369) is shared: the
/// node registers with one already running, or starts one that outlives it, as any Erlang node on the machine does.
/// </summary>
public sealed class RabbitMqBroker : IAsyncDisposable
{
    /// <summary>The server script itself, not /usr/sbin's wrapper (which switches to the rabbitmq user when run as root).</summary>
    public const string ServerPath = "/usr/lib/rabbitmq/bin/rabbitmq-server";

    public const string CtlPath = "/usr/lib/rabbitmq/bin/rabbitmqctl";

    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);
    private static readonly TimeSpan CtlTimeout = TimeSpan.FromSeconds(60);

    private readonly string _directory;
    private readonly StringBuilder _output = new();
    private Process? _process;

    private RabbitMqBroker(string directory, int port, int distPort)
    {
        _directory = directory;
        Port = port;
        DistPort = distPort;
        NodeName = $"rabbit-test-{port}@localhost";
    }

    public int Port { get; }

    public int DistPort { get; }

    public string NodeName { get; }

    /// <summary>What <see cref="CloseConnectionsAsync"/> last listed (for a failure message).</summary>
    public string LastConnectionList { get; private set; } = string.Empty;

    /// <summary>The URI the bridge and test clients connect with (guest may connect from loopback).</summary>
    public string Uri => $"amqp://guest:guest@127.0.0.1:{Port}/";

    public static async Task<RabbitMqBroker> StartAsync()
    {
        if (!File.Exists(ServerPath) || !File.Exists(CtlPath))
        {
            throw new InvalidOperationException(
                $"{ServerPath} is missing: the AMQP bridge tests need a real RabbitMQ. Install it with `apt-get install -y --no-install-recommends rabbitmq-server` (.ci/run does), and stop the service it may start (`systemctl stop rabbitmq-server`).");
        }

        var directory = Directory.CreateTempSubdirectory("relay-rabbitmq-").FullName;
        var broker = new RabbitMqBroker(directory, FreePort(), FreePort());
        try
        {
            await broker.StartProcessAsync().ConfigureAwait(false);
            return broker;
        }
        catch
        {
            await broker.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Runs <c>rabbitmqctl -n node …</c> and returns its output; fails the test when it fails.</summary>
    public async Task<string> CtlAsync(params string[] arguments)
    {
        var start = Info(CtlPath);
        start.ArgumentList.Add("-n");
        start.ArgumentList.Add(NodeName);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException("rabbitmqctl did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(CtlTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"rabbitmqctl {string.Join(' ', arguments)} took over {CtlTimeout}");
        }

        var output = await stdout.ConfigureAwait(false);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"rabbitmqctl {string.Join(' ', arguments)} failed ({process.ExitCode}): {output}{await stderr.ConfigureAwait(false)}");
        }

        return output;
    }

    /// <summary>Closes every client connection whose name (ClientProvidedName) is <paramref name="name"/>; returns how many.</summary>
    public async Task<int> CloseConnectionsAsync(string name)
    {
        var list = await CtlAsync("list_connections", "--silent", "--no-table-headers", "pid", "client_properties").ConfigureAwait(false);
        var closed = 0;
        foreach (var line in list.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            // client_properties prints as an Erlang term: [{"connection_name",longstr,"relay-amqp-outbound"},…].
            var tab = line.IndexOf('\t', StringComparison.Ordinal);
            if (tab > 0 && line.Contains("connection_name", StringComparison.Ordinal) && line.Contains($"\"{name}\"", StringComparison.Ordinal))
            {
                await CtlAsync("close_connection", line[..tab], "closed by the test").ConfigureAwait(false);
                closed++;
            }
        }

        LastConnectionList = list;
        return closed;
    }

    /// <summary>Ready and unacknowledged messages of a queue.</summary>
    public async Task<(long Ready, long Unacked)> QueueDepthAsync(string queue)
    {
        var list = await CtlAsync("list_queues", "--silent", "--no-table-headers", "name", "messages_ready", "messages_unacknowledged").ConfigureAwait(false);
        foreach (var line in list.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var fields = line.Split('\t');
            if (fields.Length == 3 && fields[0] == queue)
            {
                return (long.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture), long.Parse(fields[2], System.Globalization.CultureInfo.InvariantCulture));
            }
        }

        throw new InvalidOperationException($"no queue {queue}: {list}");
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false })
        {
            // The script, the Erlang VM under it and its helpers: all started here.
            _process.Kill(entireProcessTree: true);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try
            {
                await _process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
        }

        _process?.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private async Task StartProcessAsync()
    {
        // A cookie of its own in the folder that is HOME for the node and for rabbitmqctl: the user's is never read or made.
        var cookie = Path.Combine(_directory, ".erlang.cookie");
        await File.WriteAllTextAsync(cookie, Convert.ToHexString(RandomNumberGenerator.GetBytes(16))).ConfigureAwait(false);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(cookie, UnixFileMode.UserRead);
        }
        await File.WriteAllTextAsync(Path.Combine(_directory, "enabled_plugins"), "[].").ConfigureAwait(false);
        await File.WriteAllTextAsync(Path.Combine(_directory, "rabbitmq-env.conf"), string.Empty).ConfigureAwait(false);
        await File.WriteAllTextAsync(Path.Combine(_directory, "rabbitmq.conf"), $"listeners.tcp.default = 127.0.0.1:{Port}\n").ConfigureAwait(false);

        var start = Info(ServerPath);
        start.Environment["RABBITMQ_NODENAME"] = NodeName;
        start.Environment["RABBITMQ_NODE_IP_ADDRESS"] = "127.0.0.1";
        start.Environment["RABBITMQ_NODE_PORT"] = Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        start.Environment["RABBITMQ_DIST_PORT"] = DistPort.ToString(System.Globalization.CultureInfo.InvariantCulture);
        start.Environment["RABBITMQ_MNESIA_BASE"] = Path.Combine(_directory, "mnesia");
        start.Environment["RABBITMQ_LOG_BASE"] = Path.Combine(_directory, "log");
        start.Environment["RABBITMQ_CONFIG_FILE"] = Path.Combine(_directory, "rabbitmq.conf");
        start.Environment["RABBITMQ_CONF_ENV_FILE"] = Path.Combine(_directory, "rabbitmq-env.conf");
        start.Environment["RABBITMQ_ENABLED_PLUGINS_FILE"] = Path.Combine(_directory, "enabled_plugins");
        start.Environment["RABBITMQ_PID_FILE"] = Path.Combine(_directory, "rabbit.pid");

        // Erlang distribution (rabbitmqctl's way in) on loopback only.
        start.Environment["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"] = "-kernel inet_dist_use_interface {127,0,0,1}";
        _process = Process.Start(start) ?? throw new InvalidOperationException("rabbitmq-server did not start");
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();

        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"rabbitmq-server {NodeName} exited ({_process.ExitCode}) while starting:\n{Output()}");
            }

            try
            {
                await CtlAsync("await_startup", "--timeout", "10").ConfigureAwait(false);
                return;
            }
            catch (InvalidOperationException) when (deadline.Elapsed < StartTimeout && !_process.HasExited)
            {
                // The node is not up for rabbitmqctl yet (not registered with epmd): ask again.
                await Task.Delay(500).ConfigureAwait(false);
            }
            catch (Exception e) when (e is InvalidOperationException or TimeoutException)
            {
                throw new InvalidOperationException($"rabbitmq-server {NodeName} did not start within {StartTimeout}: {e.Message}\n{Output()}", e);
            }
        }
    }

    private ProcessStartInfo Info(string path)
    {
        var info = new ProcessStartInfo(path)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = _directory,
        };
        info.Environment["HOME"] = _directory;
        return info;
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }

    private string Output()
    {
        lock (_output)
        {
            return _output.ToString();
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

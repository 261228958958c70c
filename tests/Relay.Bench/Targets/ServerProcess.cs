using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Relay.Bench.Targets;

/// <summary>
/// A server the harness started: its PID, its log, and what /proc says about its CPU time and memory. The harness
/// ends only the processes it started, by their PID.
/// </summary>
internal sealed class ServerProcess : IAsyncDisposable
{
    /// <summary>The runtime switch that runs socket completions on the event thread instead of the thread pool.</summary>
    public const string InlineCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    private static readonly long ClockTicksPerSecond = 100; // USER_HZ is 100 on every Linux this runs on.

    private readonly Process _process;

    private ServerProcess(Process process, string name, string logPath, int port)
    {
        _process = process;
        Name = name;
        LogPath = logPath;
        Port = port;
    }

    public string Name { get; }

    /// <summary>The loopback port it listens on.</summary>
    public int Port { get; }

    public string LogPath { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>Starts <paramref name="fileName"/> with its output going to a log, and waits until <paramref name="port"/> accepts connections.</summary>
    public static async Task<ServerProcess> StartAsync(string name, string fileName, IEnumerable<string> arguments, IReadOnlyDictionary<string, string> environment, int port, string logDirectory)
    {
        Directory.CreateDirectory(logDirectory);
        var logPath = Path.Combine(logDirectory, $"{name}-{DateTime.UtcNow:HHmmss}.log");
        var info = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        // The load generator may run its socket completions inline (see Program); the servers run as they ship.
        info.Environment.Remove(InlineCompletions);
        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {fileName}");
        var log = new StreamWriter(logPath) { AutoFlush = true };
        var gate = new Lock();
        void Append(string? line)
        {
            if (line is not null)
            {
                lock (gate)
                {
                    log.WriteLine(line);
                }
            }
        }

        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var server = new ServerProcess(process, name, logPath, port);

        var deadline = Stopwatch.StartNew();
        while (true)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"{name} exited with code {process.ExitCode} while starting; its output is in {logPath}");
            }

            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync(IPAddress.Loopback, port).ConfigureAwait(false);
                return server;
            }
            catch (SocketException) when (deadline.Elapsed < TimeSpan.FromSeconds(30))
            {
                await Task.Delay(100).ConfigureAwait(false);
            }
            catch (SocketException)
            {
                await server.DisposeAsync().ConfigureAwait(false);
                throw new TimeoutException($"{name} did not listen on port {port} within 30 s; its output is in {logPath}");
            }
        }
    }

    /// <summary>A free loopback TCP port (bound and released; the server takes it right after).</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>User plus system CPU time the process has used so far.</summary>
    public TimeSpan CpuTime()
    {
        return CpuOf(File.ReadAllText($"/proc/{Pid}/stat"));
    }

    // utime + stime of a /proc/PID/stat (or /proc/PID/task/TID/stat) line.
    private static TimeSpan CpuOf(string stat)
    {
        // The command may hold spaces, so count fields from the closing parenthesis.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        return TimeSpan.FromSeconds((double)ticks / ClockTicksPerSecond);
    }

    /// <summary>
    /// CPU time each of the process's threads has used so far, by thread id, with the thread's name: a thread that uses
    /// a whole core while the others wait is what bounds a server that cannot use the cores it has.
    /// </summary>
    public Dictionary<int, (string Name, TimeSpan Cpu)> ThreadCpuTimes()
    {
        var threads = new Dictionary<int, (string, TimeSpan)>();
        foreach (var task in Directory.EnumerateDirectories($"/proc/{Pid}/task"))
        {
            try
            {
                var tid = int.Parse(Path.GetFileName(task), CultureInfo.InvariantCulture);
                threads[tid] = (File.ReadAllText(Path.Combine(task, "comm")).Trim(), CpuOf(File.ReadAllText(Path.Combine(task, "stat"))));
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // The thread ended while being read.
            }
        }

        return threads;
    }

    /// <summary>Resident set size now, in bytes.</summary>
    public long RssBytes() => StatusNumber("VmRSS:") * 1024;

    /// <summary>The largest resident set size the process has had, in bytes.</summary>
    public long PeakRssBytes() => StatusNumber("VmHWM:") * 1024;

    /// <summary>Threads the process runs now.</summary>
    public int ThreadCount() => (int)StatusNumber("Threads:");

    /// <summary>Descriptors the process holds open now (sockets, files, pipes, epoll).</summary>
    public int DescriptorCount() => Directory.GetFileSystemEntries($"/proc/{Pid}/fd").Length;

    private long StatusNumber(string field) => StatusNumber(Pid, field);

    /// <summary>The number a /proc/PID/status field of process <paramref name="pid"/> starts with (kB for the memory fields).</summary>
    internal static long StatusNumber(int pid, string field)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith(field, StringComparison.Ordinal))
            {
                return long.Parse(line[field.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException($"/proc/{pid}/status has no {field}");
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }

        _process.Dispose();
    }
}

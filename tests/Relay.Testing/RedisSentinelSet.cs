using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Relay.Testing;

/// <summary>
/// A Redis master, its replicas (two unless asked otherwise, as a production Sentinel deployment runs: a killed master
/// leaves the promoted replica a replica of its own) and three <c>redis-sentinel</c> processes watching them, each on a
/// free loopback port and stopped by the PID this class started. Sentinels call the master down after
/// <see cref="DownAfterMs"/> and two of them agree to fail over. Every server runs with <c>min-replicas-to-write 1</c>,
/// as a Sentinel deployment should. A missing binary fails the test (<c>apt-get install redis-server redis-sentinel</c>).
/// </summary>
public sealed class RedisSentinelSet : IAsyncDisposable
{
    public const string SentinelPath = "/usr/bin/redis-sentinel";

    /// <summary>The name the sentinels know the master by (<c>serviceName=</c>).</summary>
    public const string ServiceName = "relay";

    /// <summary>
    /// How long a silent master takes to be called down: short, so a failover fits a test's timeouts, but not so short
    /// that a loaded machine's pause looks like a death. At 1 s one CI run (2 cores, every test project running) had a
    /// sentinel call the master it had just promoted down a second later, before its first answer to that sentinel,
    /// and fail back over to the restarted old master, empty: the lagging-replica test then waited in vain for that
    /// one to replicate.
    /// </summary>
    public const int DownAfterMs = 3000;

    private readonly List<Process> _sentinels = [];
    private readonly List<int> _sentinelPorts = [];
    private readonly string _directory;
    private readonly StringBuilder _log = new();

    private RedisSentinelSet(RedisServer master, IReadOnlyList<RedisServer> replicas, string directory)
    {
        Master = master;
        Replicas = replicas;
        _directory = directory;
    }

    /// <summary>The server that is master at the start.</summary>
    public RedisServer Master { get; }

    /// <summary>The servers that replicate it at the start; the sentinels promote one of them when the master dies.</summary>
    public IReadOnlyList<RedisServer> Replicas { get; }

    /// <summary>The first replica (with one replica, the one promoted when the master dies).</summary>
    public RedisServer Replica => Replicas[0];

    /// <summary>The StackExchange.Redis configuration string that finds the master through the sentinels.</summary>
    public string Configuration =>
        string.Join(',', _sentinelPorts.Select(static p => "127.0.0.1:" + p.ToString(CultureInfo.InvariantCulture))) + ",serviceName=" + ServiceName;

    /// <summary>What the sentinels wrote, for a failing test's output.</summary>
    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    public static async Task<RedisSentinelSet> StartAsync(int replicas = 2)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(replicas, 1);
        if (!File.Exists(SentinelPath))
        {
            throw new InvalidOperationException($"{SentinelPath} is missing: the Sentinel tests need it. Install it with `apt-get install redis-sentinel`.");
        }

        // A master with no replica in sync refuses writes: an old master restarted empty (before the sentinels make it a
        // replica) cannot take appends in an epoch of its own, which subscribers would otherwise see.
        string[] writeOnlyWithAReplica = ["--min-replicas-to-write", "1", "--min-replicas-max-lag", "10"];
        var master = await RedisServer.StartAsync(null, false, writeOnlyWithAReplica);
        var started = new List<RedisServer>();
        RedisSentinelSet? set = null;
        try
        {
            for (var i = 0; i < replicas; i++)
            {
                started.Add(await RedisServer.StartAsync(null, false, [.. writeOnlyWithAReplica, "--replicaof", "127.0.0.1", master.Port.ToString(CultureInfo.InvariantCulture)]));
            }

            set = new RedisSentinelSet(master, started, Directory.CreateTempSubdirectory("relay-sentinel-").FullName);
            foreach (var replica in started)
            {
                await set.WaitUntilAsync(() => ReplicaInSyncAsync(replica.Port), $"replica 127.0.0.1:{replica.Port} to sync with the master");
            }

            for (var i = 0; i < 3; i++)
            {
                await set.StartSentinelAsync(i);
            }

            // Every sentinel knows the replica and the other sentinels before the set is handed out, so a failover can start at once.
            foreach (var port in set._sentinelPorts)
            {
                await set.WaitUntilAsync(async () =>
                {
                    var info = await CommandAsync(port, "SENTINEL", "MASTER", ServiceName);
                    return Field(info, "num-slaves") == replicas.ToString(CultureInfo.InvariantCulture) && Field(info, "num-other-sentinels") == "2";
                }, $"sentinel {port} to see the replicas and the other sentinels");
            }

            return set;
        }
        catch
        {
            if (set is not null)
            {
                await set.DisposeAsync();
            }
            else
            {
                foreach (var replica in started)
                {
                    await replica.DisposeAsync();
                }

                await master.DisposeAsync();
            }

            throw;
        }
    }

    /// <summary>Waits until <paramref name="server"/> (an old master restarted, say) is a replica in sync with its master.</summary>
    public Task WaitForReplicaInSyncAsync(RedisServer server)
    {
        ArgumentNullException.ThrowIfNull(server);
        return WaitUntilAsync(
            async () => (await CommandAsync(server.Port, "INFO", "replication")).Contains("master_link_status:up", StringComparison.Ordinal),
            $"127.0.0.1:{server.Port} to replicate the new master");
    }

    /// <summary>Waits until the sentinels name one of <see cref="Replicas"/> as the master, and returns it.</summary>
    public async Task<RedisServer> WaitForPromotionAsync()
    {
        RedisServer? promoted = null;
        await WaitUntilAsync(async () =>
        {
            var reply = await CommandAsync(_sentinelPorts[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", ServiceName);
            promoted = Replicas.FirstOrDefault(r => reply.Contains("\r\n" + r.Port.ToString(CultureInfo.InvariantCulture) + "\r\n", StringComparison.Ordinal));
            return promoted is not null;
        }, "the sentinels to promote a replica", TimeSpan.FromSeconds(30));
        return promoted!;
    }

    /// <summary>Waits until the sentinels name <paramref name="server"/> as the master.</summary>
    public Task WaitForMasterAsync(RedisServer server) =>
        WaitUntilAsync(async () =>
        {
            var reply = await CommandAsync(_sentinelPorts[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", ServiceName);
            return reply.Contains(server.Port.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal);
        }, $"the sentinels to promote 127.0.0.1:{server.Port}", TimeSpan.FromSeconds(30));

    /// <summary>
    /// Asks the sentinels for a failover with no server down (<c>SENTINEL FAILOVER</c>): a replica is promoted and the
    /// master made its replica in place, its connections left open. Returns the new master once the sentinels name it.
    /// </summary>
    public async Task<RedisServer> FailoverAsync()
    {
        var reply = await CommandAsync(_sentinelPorts[0], "SENTINEL", "FAILOVER", ServiceName);
        if (!reply.StartsWith("+OK", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"SENTINEL FAILOVER answered '{reply.Trim()}':\n{Log}");
        }

        return await WaitForPromotionAsync();
    }

    /// <summary>The pub/sub channels clients are subscribed to on <paramref name="server"/> (<c>PUBSUB CHANNELS</c>), sorted.</summary>
    public static async Task<IReadOnlyList<string>> SubscribedChannelsAsync(RedisServer server)
    {
        var reply = (await CommandAsync(server.Port, "PUBSUB", "CHANNELS")).Split("\r\n");
        var channels = new List<string>();
        for (var i = 2; i < reply.Length; i += 2)
        {
            if (reply[i - 1].StartsWith('$'))
            {
                channels.Add(reply[i]);
            }
        }

        channels.Sort(StringComparer.Ordinal);
        return channels;
    }

    private async Task StartSentinelAsync(int index)
    {
        for (var attempt = 1; ; attempt++)
        {
            var port = RedisServer.FreePort();
            var config = Path.Combine(_directory, $"sentinel-{index}.conf");
            await File.WriteAllTextAsync(config, string.Join('\n',
                $"port {port}",
                "bind 127.0.0.1",
                $"dir {_directory}",
                $"sentinel monitor {ServiceName} 127.0.0.1 {Master.Port} 2",
                $"sentinel down-after-milliseconds {ServiceName} {DownAfterMs}",
                $"sentinel failover-timeout {ServiceName} 10000",
                $"sentinel parallel-syncs {ServiceName} 1",
                ""));
            var info = new ProcessStartInfo(SentinelPath) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = _directory };
            info.ArgumentList.Add(config);
            var process = Process.Start(info) ?? throw new InvalidOperationException($"Could not start {SentinelPath}.");
            process.OutputDataReceived += (_, e) => Append(index, e.Data);
            process.ErrorDataReceived += (_, e) => Append(index, e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            try
            {
                await WaitUntilAsync(async () => process.HasExited ? throw new InvalidOperationException($"redis-sentinel exited:\n{Log}") : await AnswersPingAsync(port), $"sentinel {index} to answer on {port}");
                _sentinels.Add(process);
                _sentinelPorts.Add(port);
                return;
            }
            catch (InvalidOperationException) when (attempt < 5 && Log.Contains("Address already in use", StringComparison.Ordinal))
            {
                Stop(process);
            }
            catch
            {
                Stop(process);
                throw;
            }
        }
    }

    private void Append(int index, string? line)
    {
        if (line is not null)
        {
            lock (_log)
            {
                _log.Append("sentinel ").Append(index).Append(": ").AppendLine(line);
            }
        }
    }

    private static async Task<bool> ReplicaInSyncAsync(int port)
    {
        var info = await CommandAsync(port, "INFO", "replication");
        return info.Contains("master_link_status:up", StringComparison.Ordinal);
    }

    private static async Task<bool> AnswersPingAsync(int port) => (await CommandAsync(port, "PING")).StartsWith("+PONG", StringComparison.Ordinal);

    // The field's value in a SENTINEL MASTER reply (a flat array of names and values).
    private static string? Field(string reply, string name)
    {
        var lines = reply.Split("\r\n");
        for (var i = 0; i + 2 < lines.Length; i++)
        {
            if (lines[i] == name)
            {
                return lines[i + 2];
            }
        }

        return null;
    }

    private static Task<string> CommandAsync(int port, params string[] args) => RedisCommand.SendAsync(port, args);

    private async Task WaitUntilAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(20));
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"gave up waiting for {what}:\n{Log}");
            }

            await Task.Delay(50);
        }
    }

    private static void Stop(Process process)
    {
        if (!process.HasExited)
        {
            process.Kill();
            process.WaitForExit(5000);
        }

        process.Dispose();
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var sentinel in _sentinels)
        {
            Stop(sentinel);
        }

        _sentinels.Clear();
        foreach (var replica in Replicas)
        {
            await replica.DisposeAsync();
        }

        await Master.DisposeAsync();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temp folder is not worth failing a test over.
        }
    }
}

using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Relay.Testing;

namespace Relay.Integration.Tests.Distributed;

/// <summary>
/// Relay as separate processes over a real Redis, as <c>tye.yaml</c> runs it: auth, two routing instances, one fan-out
/// (or more: they share the fan-out shards) and two ingress nodes (A and B), each its own <c>dotnet Relay.X.dll</c> on a free loopback port with
/// <c>Relay__Bus=redis</c>. Every process is ours and is killed by its PID when the cluster is disposed.
/// </summary>
internal sealed class RelayCluster : IAsyncDisposable
{
    internal static readonly string RepositoryRoot = FindRoot();
    private readonly Dictionary<string, string> _environment;
    private readonly string _logDirectory = Directory.CreateTempSubdirectory("relay-cluster-").FullName;
    private Dictionary<string, string> _authSettings = [];

    private readonly RedisServer? _redis;
    private readonly RedisClusterSet? _redisCluster;

    private RelayCluster(RedisServer? redis, RedisClusterSet? redisCluster, Dictionary<string, string> environment)
    {
        _redis = redis;
        _redisCluster = redisCluster;
        _environment = environment;
    }

    /// <summary>The one redis-server (not for a cluster started over a Redis Cluster).</summary>
    public RedisServer Redis => _redis ?? throw new InvalidOperationException("this Relay runs over a Redis Cluster, not one redis-server");

    public ServiceProcess Auth { get; private set; } = null!;

    public ServiceProcess[] Routing { get; private set; } = [];

    public ServiceProcess FanOut => FanOuts[0];

    public ServiceProcess[] FanOuts { get; private set; } = [];

    public ServiceProcess IngressA { get; private set; } = null!;

    public ServiceProcess IngressB { get; private set; } = null!;

    private IEnumerable<ServiceProcess> All => [Auth, .. Routing, .. FanOuts, IngressA, IngressB];

    /// <summary>
    /// Starts Redis and the six processes (<paramref name="fanOuts"/> fan-out processes: one more process for each past
    /// the first); <paramref name="environment"/> is added to every process's. With
    /// <paramref name="authSettingsDirectory"/>, the auth service runs with that folder as its content root and takes its
    /// apps and keys from the <c>appsettings.json</c> there (which a test may edit while it runs), not from its environment.
    /// With <paramref name="overRedisCluster"/>, Redis is a three-master Redis Cluster (<see cref="RedisClusterSet"/>).
    /// </summary>
    public static async Task<RelayCluster> StartAsync(IReadOnlyDictionary<string, string>? environment = null, string? authSettingsDirectory = null, int fanOuts = 1, bool overRedisCluster = false)
    {
        var redis = overRedisCluster ? null : await RedisServer.StartAsync();
        var redisCluster = overRedisCluster ? await RedisClusterSet.StartAsync() : null;
        var settings = BusSettings(redis?.Configuration ?? redisCluster!.Configuration);
        settings["Logging__LogLevel__Default"] = "Information";
        // Only the auth service is given apps and keys: ingress nodes get them from Redis (Relay:Auth:KeySource=redis).
        var keys = authSettingsDirectory is not null
            ? new Dictionary<string, string> { ["ASPNETCORE_CONTENTROOT"] = authSettingsDirectory }
            : ServiceProcess.TestKeysEnvironment();

        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            settings[key] = value;
        }

        var cluster = new RelayCluster(redis, redisCluster, settings) { _authSettings = keys };
        try
        {
            // The auth service first: the ingress nodes are given its URL, to pass token requests to.
            cluster.Auth = await cluster.StartServiceAsync("auth", "Relay.Auth");
            Task<ServiceProcess>[] starting =
            [
                cluster.StartServiceAsync("routing-1", "Relay.Routing"),
                cluster.StartServiceAsync("routing-2", "Relay.Routing"),
                cluster.StartServiceAsync("ingress-a", "Relay.Ingress"),
                cluster.StartServiceAsync("ingress-b", "Relay.Ingress"),
                .. Enumerable.Range(1, fanOuts).Select(i => cluster.StartServiceAsync(i == 1 ? "fanout" : $"fanout-{i}", "Relay.FanOut")),
            ];
            ServiceProcess[] started;
            try
            {
                started = await Task.WhenAll(starting);
            }
            catch
            {
                // The ones that did start are not the cluster's yet: stop them here, or they outlive the test.
                foreach (var task in starting.Where(static t => t.IsCompletedSuccessfully))
                {
                    await task.Result.DisposeAsync();
                }

                throw;
            }

            cluster.Routing = [started[0], started[1]];
            cluster.IngressA = started[2];
            cluster.IngressB = started[3];
            cluster.FanOuts = started[4..];
            await cluster.WaitForShardsAsync();
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }

        return cluster;
    }

    /// <summary>
    /// The environment of a process on the Redis bus at <paramref name="configuration"/>, with short leases (a killed
    /// process's shards and presence move within seconds) and free MQTT and gRPC ports (several nodes on one machine).
    /// </summary>
    public static Dictionary<string, string> BusSettings(string configuration) => new()
    {
        ["Relay__Bus"] = "redis",
        ["Relay__Redis__Configuration"] = configuration,
        ["Relay__Redis__LeaseTtl"] = "00:00:01.5",
        ["Relay__Redis__FanOutLeaseTtl"] = "00:00:01.5",
        ["Relay__Redis__NodeTtl"] = "00:00:02",
        ["Relay__Redis__RequestTimeout"] = "00:00:10",
        ["Relay__Mqtt__Port"] = "0",
        ["Relay__Grpc__Port"] = "0",
    };

    /// <summary>Starts (or starts again) one service process.</summary>
    public Task<ServiceProcess> StartServiceAsync(string name, string project, int? port = null)
    {
        var environment = new Dictionary<string, string>(_environment)
        {
            ["Relay__Ingress__NodeId"] = name,
            ["OTEL_SERVICE_NAME"] = name,
        };
        if (project == "Relay.Auth")
        {
            foreach (var (key, value) in _authSettings)
            {
                environment[key] = value;
            }
        }
        else if (project == "Relay.Ingress")
        {
            environment["Relay__Auth__KeySource"] = "redis";
            environment["Relay__Ingress__AuthUrl"] = $"http://127.0.0.1:{Auth.Port}/";
        }
        else if (project == "Relay.FanOut")
        {
            // Read only when it signs Pusher webhooks (Relay:Pusher:Apps:…:Webhooks): the keys the auth service published.
            environment["Relay__Auth__KeySource"] = "redis";
        }

        var dll = Path.Combine(RepositoryRoot, "services", project, "bin", "Release", "net10.0", project + ".dll");
        return StartOnFreePortAsync(name, dll, port, environment);
    }

    // A port found free can be taken by another process before ours binds it (six start at once here): try another.
    private async Task<ServiceProcess> StartOnFreePortAsync(string name, string dll, int? port, Dictionary<string, string> environment)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await ServiceProcess.StartAsync(name, dll, port ?? FreePort(), environment, _logDirectory);
            }
            catch (InvalidOperationException e) when (port is null && attempt < 3 && e.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
            {
                // Next port.
            }
        }
    }

    /// <summary>Waits until every routing shard and every fan-out shard has an owner.</summary>
    public async Task WaitForShardsAsync()
    {
        await using var connection = await ConnectRedisAsync();
        var redis = connection.GetDatabase();
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            var owned = 0;
            for (var shard = 0; shard < 16; shard++)
            {
                if (!(await redis.StringGetAsync(Relay.Bus.Redis.RedisKeys.Lease(shard))).IsNull)
                {
                    owned++;
                }
            }

            var fanOutOwners = await FanOutOwnersAsync();
            if (owned == 16 && fanOutOwners.All(static o => o is not null))
            {
                return;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{owned} of 16 routing shards and {fanOutOwners.Count(static o => o is not null)} of 16 fan-out shards have an owner after 20 s; logs in {_logDirectory}");
            }

            await Task.Delay(100);
        }
    }

    /// <summary>The owner of each routing shard's lease (null where none).</summary>
    public async Task<string?[]> ShardOwnersAsync()
    {
        await using var connection = await ConnectRedisAsync();
        var redis = connection.GetDatabase();
        var owners = new string?[16];
        for (var shard = 0; shard < owners.Length; shard++)
        {
            owners[shard] = await redis.StringGetAsync(Relay.Bus.Redis.RedisKeys.Lease(shard));
        }

        return owners;
    }

    /// <summary>The owner (bus instance id) of each fan-out shard's lease (null where none).</summary>
    public async Task<string?[]> FanOutOwnersAsync()
    {
        await using var connection = await ConnectRedisAsync();
        var redis = connection.GetDatabase();
        var owners = new string?[16];
        for (var shard = 0; shard < owners.Length; shard++)
        {
            owners[shard] = await redis.StringGetAsync(Relay.Bus.Redis.RedisKeys.FanOutLease(shard));
        }

        return owners;
    }

    /// <summary>The WebSocket endpoint of an ingress node, with the test app's root key.</summary>
    public static Uri RealtimeUri(ServiceProcess ingress, string? query = null) =>
        new($"ws://127.0.0.1:{ingress.Port}/v1/realtime?key={Uri.EscapeDataString(RelayServer.Key)}{query}");

    public string Logs => string.Join("\n", All.Where(p => p is not null).Select(p => $"--- {p.Name} ---\n{p.Tail()}"));

    /// <summary>Where the processes' last log lines go when the cluster stops (a test's output: shown when it fails).</summary>
    public Action<string>? Output { get; set; }

    public async ValueTask DisposeAsync()
    {
        try
        {
            foreach (var process in All.Where(p => p is not null))
            {
                await process.DisposeAsync();
            }
        }
        finally
        {
            if (_redis is not null)
            {
                await _redis.DisposeAsync();
            }

            if (_redisCluster is not null)
            {
                await _redisCluster.DisposeAsync();
            }
        }

        Output?.Invoke(Logs);
        try
        {
            Directory.Delete(_logDirectory, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: it is a temporary folder.
        }
    }

    private Task<StackExchange.Redis.IConnectionMultiplexer> ConnectRedisAsync() => _redis?.ConnectAsync() ?? _redisCluster!.ConnectAsync();

    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string FindRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Relay.Cloud.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException("cannot find the repository root (Relay.Cloud.sln) above " + AppContext.BaseDirectory);
    }
}

/// <summary>One service process: started with <c>dotnet</c>, ready when <c>/readyz</c> answers 200, killed by its PID.</summary>
internal sealed class ServiceProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Queue<string> _tail = new();
    private string? _ownedLogDirectory;

    // The process logged that it listens on its port. Until then a /readyz answer may come from another process that took
    // the port first (this one then fails to bind and exits): FanOutShardTests once talked to such a stranger (404).
    private bool _bound;

    private ServiceProcess(Process process, string name, int port)
    {
        _process = process;
        Name = name;
        Port = port;
    }

    public string Name { get; }

    public int Port { get; }

    public int ProcessId => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>The test suite's apps and keys (<see cref="RelayServer.DefaultConfiguration"/>) as environment variables.</summary>
    public static Dictionary<string, string> TestKeysEnvironment() =>
        RelayServer.DefaultConfiguration().ToDictionary(e => e.Key.Replace(":", "__", StringComparison.Ordinal), e => e.Value!);

    /// <summary>
    /// Starts the standalone host as built (Release) on a free port, with the test suite's apps and keys and
    /// <paramref name="settings"/> (environment variables, which win), logging to a new temporary folder.
    /// </summary>
    public static async Task<ServiceProcess> StartStandaloneAsync(IReadOnlyDictionary<string, string> settings, int? descriptorLimit = null)
    {
        var environment = TestKeysEnvironment();
        foreach (var (key, value) in settings)
        {
            environment[key] = value;
        }

        var logs = Directory.CreateTempSubdirectory("relay-standalone-").FullName;
        var dll = Path.Combine(RelayCluster.RepositoryRoot, "services", "Relay.Standalone", "bin", "Release", "net10.0", "Relay.Standalone.dll");
        var host = await StartAsync("standalone", dll, RelayCluster.FreePort(), environment, logs, descriptorLimit);
        host._ownedLogDirectory = logs;
        return host;
    }

    /// <summary>Starts <paramref name="dll"/>; with <paramref name="descriptorLimit"/>, under <c>prlimit --nofile</c> (util-linux) with that soft and hard limit.</summary>
    public static async Task<ServiceProcess> StartAsync(string name, string dll, int port, IReadOnlyDictionary<string, string> environment, string logDirectory, int? descriptorLimit = null)
    {
        if (!File.Exists(dll))
        {
            throw new InvalidOperationException($"{dll} is missing: build the solution in Release first (./test.sh does).");
        }

        var info = new ProcessStartInfo(descriptorLimit is null ? "dotnet" : "prlimit")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(dll)!,
        };
        if (descriptorLimit is { } limit)
        {
            // prlimit sets the limit and execs the command: the process we hold is the service itself.
            info.ArgumentList.Add($"--nofile={limit}:{limit}");
            info.ArgumentList.Add("dotnet");
        }

        info.ArgumentList.Add(dll);
        info.ArgumentList.Add("--urls");
        info.ArgumentList.Add($"http://127.0.0.1:{port}");

        // A service starts as it ships: the runtime switch the test process may run with is not its own.
        info.Environment.Remove("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS");
        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }

        // Its "Now listening on" line is how the test knows the port is this process's (below), whatever else it logs.
        info.Environment["Logging__LogLevel__Microsoft.Hosting.Lifetime"] = "Information";
        var listening = $"Now listening on: http://127.0.0.1:{port}";

        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start " + dll);
        var service = new ServiceProcess(process, name, port);
        var log = new StreamWriter(Path.Combine(logDirectory, name + ".log"), append: true) { AutoFlush = true };
        void Append(string? line)
        {
            if (line is null)
            {
                return;
            }

            lock (service._tail)
            {
                service._bound |= line.Contains(listening, StringComparison.Ordinal);
                if (MqttListening.Match(line) is { Success: true } mqtt)
                {
                    service._mqttPort = int.Parse(mqtt.Groups[1].ValueSpan, System.Globalization.CultureInfo.InvariantCulture);
                }

                log.WriteLine(line);
                service._tail.Enqueue(line);
                if (service._tail.Count > 60)
                {
                    service._tail.Dequeue();
                }
            }
        }

        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"{name} exited with code {process.ExitCode} while starting:\n{service.Tail()}");
            }

            try
            {
                using var response = await http.GetAsync(new Uri($"http://127.0.0.1:{port}/readyz"));
                bool bound;
                lock (service._tail)
                {
                    bound = service._bound;
                }

                if (response.IsSuccessStatusCode && bound)
                {
                    return service;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                // Not listening yet.
            }

            if (DateTime.UtcNow > deadline)
            {
                await service.DisposeAsync();
                throw new TimeoutException($"{name} was not ready (/readyz) within 60 s:\n{service.Tail()}");
            }

            await Task.Delay(100);
        }
    }

    // An ingress node's MQTT listener says its port (Relay__Mqtt__Port=0: a free one), event 1440.
    private static readonly System.Text.RegularExpressions.Regex MqttListening = new(@"MQTT listening on TCP port (\d+)", System.Text.RegularExpressions.RegexOptions.CultureInvariant);
    private int _mqttPort;

    /// <summary>The TCP port an ingress process's MQTT listener took (it logs it once started; waited for up to 30 s).</summary>
    public async Task<int> MqttPortAsync()
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            lock (_tail)
            {
                if (_mqttPort != 0)
                {
                    return _mqttPort;
                }
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"{Name} logged no 'MQTT listening on TCP port' line within 30 s (is Relay:Mqtt:Enabled off?):\n{Tail()}");
            }

            await Task.Delay(50);
        }
    }

    public string Tail()
    {
        lock (_tail)
        {
            return string.Join("\n", _tail);
        }
    }

    /// <summary>Freezes the process (SIGSTOP to its PID), as a long GC pause or a stalled VM would.</summary>
    public void Pause() => Signal("-STOP");

    /// <summary>Lets a paused process run again (SIGCONT).</summary>
    public void Resume() => Signal("-CONT");

    private void Signal(string signal)
    {
        using var kill = Process.Start("kill", [signal, _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]) ?? throw new InvalidOperationException("could not run kill");
        kill.WaitForExit(5000);
    }

    /// <summary>SIGKILL, as a crash would.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit(10_000);
        }
    }

    public ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            // A paused process dies of SIGKILL too; resumed first all the same, so nothing waits on it.
            Resume();
        }

        Kill();
        _process.Dispose();
        if (_ownedLogDirectory is not null && Directory.Exists(_ownedLogDirectory))
        {
            Directory.Delete(_ownedLogDirectory, recursive: true);
        }

        return ValueTask.CompletedTask;
    }
}

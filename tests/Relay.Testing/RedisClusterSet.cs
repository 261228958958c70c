using System.Diagnostics;
using System.Globalization;
using StackExchange.Redis;

namespace Relay.Testing;

/// <summary>
/// A Redis Cluster of three masters, with one replica each where asked, every one a <c>redis-server --cluster-enabled yes</c>
/// on a free loopback port, joined by <c>redis-cli --cluster create … --cluster-replicas N</c> and stopped by the PIDs this
/// class started. A replica takes over its master's slots the node timeout (plus an election) after the master stops
/// answering. A missing binary fails the test (<c>apt-get install redis-server redis-tools</c>).
/// </summary>
public sealed class RedisClusterSet : IAsyncDisposable
{
    public const string CliPath = "/usr/bin/redis-cli";

    /// <summary>A node timeout short enough for a failover to fit a test's timeouts.</summary>
    public const int FailoverNodeTimeoutMs = 1000;

    /// <summary>
    /// The node timeout of a set that is not failed over on purpose: long enough that nodes starved of CPU on a busy test
    /// machine are not taken for dead (Redis's default).
    /// </summary>
    public const int SteadyNodeTimeoutMs = 15_000;

    private const int Masters = 3;

    private readonly List<RedisServer> _servers;

    private RedisClusterSet(List<RedisServer> servers) => _servers = servers;

    /// <summary>Every server, masters and replicas, in start order (which role each has is the cluster's to say).</summary>
    public IReadOnlyList<RedisServer> Servers => _servers;

    /// <summary>The StackExchange.Redis configuration string (every node; the client finds the slots itself).</summary>
    public string Configuration => string.Join(',', _servers.Select(static s => "127.0.0.1:" + s.Port.ToString(CultureInfo.InvariantCulture)));

    /// <summary>What the servers wrote, for a failing test's output.</summary>
    public string Log => string.Join('\n', _servers.Select(static s => $"--- redis {s.Port} ---\n{s.Log}"));

    /// <summary>
    /// Starts three masters, with a replica each when <paramref name="replicas"/> (what a failover test needs), nodes
    /// taking a silent one for dead after <paramref name="nodeTimeoutMs"/>.
    /// </summary>
    public static async Task<RedisClusterSet> StartAsync(bool replicas = false, int nodeTimeoutMs = SteadyNodeTimeoutMs)
    {
        if (!File.Exists(CliPath))
        {
            throw new InvalidOperationException($"{CliPath} is missing: the Redis Cluster tests need it to create the cluster. Install it with `apt-get install redis-tools`.");
        }

        // cluster-require-full-coverage no: while one master is down (before its replica takes over), the other slots
        // still serve, as a deployment that prefers availability runs it.
        string[] clusterArguments =
        [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", nodeTimeoutMs.ToString(CultureInfo.InvariantCulture),
            "--cluster-require-full-coverage", "no",
        ];
        var servers = new List<RedisServer>();
        var set = new RedisClusterSet(servers);
        try
        {
            for (var i = 0; i < Masters * (replicas ? 2 : 1); i++)
            {
                servers.Add(await RedisServer.StartAsync(null, false, clusterArguments));
            }

            var create = new ProcessStartInfo(CliPath) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            create.ArgumentList.Add("--cluster");
            create.ArgumentList.Add("create");
            foreach (var server in servers)
            {
                create.ArgumentList.Add("127.0.0.1:" + server.Port.ToString(CultureInfo.InvariantCulture));
            }

            create.ArgumentList.Add("--cluster-replicas");
            create.ArgumentList.Add(replicas ? "1" : "0");
            create.ArgumentList.Add("--cluster-yes");
            using (var cli = Process.Start(create) ?? throw new InvalidOperationException($"Could not start {CliPath}."))
            {
                var output = cli.StandardOutput.ReadToEndAsync();
                var error = cli.StandardError.ReadToEndAsync();
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
                await cli.WaitForExitAsync(timeout.Token);
                if (cli.ExitCode != 0)
                {
                    throw new InvalidOperationException($"redis-cli --cluster create exited with {cli.ExitCode}:\n{await output}\n{await error}");
                }
            }

            // Every node sees every slot served and every node, and every replica is in sync with its master, before
            // the set is handed out (so a failover can start at once).
            foreach (var server in servers)
            {
                await set.WaitUntilAsync(async () =>
                {
                    var info = await CommandAsync(server.Port, "CLUSTER", "INFO");
                    return info.Contains("cluster_state:ok", StringComparison.Ordinal)
                        && info.Contains("cluster_slots_ok:16384", StringComparison.Ordinal)
                        && info.Contains("cluster_known_nodes:" + servers.Count.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal);
                }, $"node {server.Port} to see the whole cluster");
                await set.WaitUntilAsync(async () =>
                {
                    var info = await CommandAsync(server.Port, "INFO", "replication");
                    return info.Contains("role:master", StringComparison.Ordinal) || info.Contains("master_link_status:up", StringComparison.Ordinal);
                }, $"node {server.Port} to sync with its master");
            }

            return set;
        }
        catch
        {
            await set.DisposeAsync();
            throw;
        }
    }

    /// <summary>Client options for the cluster, quick to notice a failover.</summary>
    public ConfigurationOptions Options() => RedisServer.QuickClientOptions(Configuration);

    /// <summary>A multiplexer on the cluster, with Relay's scripts loaded (as the services' <c>RedisConnector</c> makes it).</summary>
    public Task<IConnectionMultiplexer> ConnectAsync() => Relay.Bus.Redis.RedisConnector.ConnectAsync(Options());

    /// <summary>The server that is master of <paramref name="key"/>'s slot now (as the first live node answering says).</summary>
    public async Task<RedisServer> MasterOfAsync(string key)
    {
        foreach (var server in _servers)
        {
            var slotReply = await CommandAsync(server.Port, "CLUSTER", "KEYSLOT", key);
            if (!slotReply.StartsWith(':'))
            {
                continue;
            }

            var slot = int.Parse(slotReply.AsSpan(1).Trim(), NumberStyles.None, CultureInfo.InvariantCulture);
            foreach (var line in (await CommandAsync(server.Port, "CLUSTER", "NODES")).Split('\n'))
            {
                // <id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch> <link> <slot ranges...>
                var fields = line.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length < 9 || !fields[2].Contains("master", StringComparison.Ordinal) || fields[2].Contains("fail", StringComparison.Ordinal))
                {
                    continue;
                }

                foreach (var range in fields[8..])
                {
                    var bounds = range.Split('-');
                    if (!int.TryParse(bounds[0], NumberStyles.None, CultureInfo.InvariantCulture, out var first))
                    {
                        continue;
                    }

                    var last = bounds.Length > 1 ? int.Parse(bounds[1], NumberStyles.None, CultureInfo.InvariantCulture) : first;
                    if (slot >= first && slot <= last)
                    {
                        var port = int.Parse(fields[1].AsSpan(fields[1].IndexOf(':') + 1, fields[1].IndexOf('@') - fields[1].IndexOf(':') - 1), NumberStyles.None, CultureInfo.InvariantCulture);
                        return _servers.Single(s => s.Port == port);
                    }
                }
            }
        }

        throw new InvalidOperationException($"no live node names a master for {key}:\n{Log}");
    }

    /// <summary>Waits until a server other than <paramref name="old"/> is master of <paramref name="key"/>'s slot, and returns it.</summary>
    public async Task<RedisServer> WaitForNewMasterAsync(string key, RedisServer old)
    {
        RedisServer? master = null;
        await WaitUntilAsync(async () =>
        {
            try
            {
                master = await MasterOfAsync(key);
                return master != old && (await CommandAsync(master.Port, "INFO", "replication")).Contains("role:master", StringComparison.Ordinal);
            }
            catch (InvalidOperationException)
            {
                return false;
            }
        }, $"a replica to take over {key}'s slot from 127.0.0.1:{old.Port}", TimeSpan.FromSeconds(30));
        return master!;
    }

    /// <summary>Waits until <paramref name="server"/> is a replica in sync with its master (after a restart, say).</summary>
    public Task WaitForReplicaInSyncAsync(RedisServer server) =>
        WaitUntilAsync(
            async () => (await CommandAsync(server.Port, "INFO", "replication")).Contains("master_link_status:up", StringComparison.Ordinal),
            $"127.0.0.1:{server.Port} to replicate its master");

    private static Task<string> CommandAsync(int port, params string[] args) => RedisCommand.SendAsync(port, args);

    private async Task WaitUntilAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"gave up waiting for {what}:\n{Log}");
            }

            await Task.Delay(50);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var server in _servers)
        {
            await server.DisposeAsync();
        }

        _servers.Clear();
    }
}

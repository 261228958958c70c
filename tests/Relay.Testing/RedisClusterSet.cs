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

    /// <summary>The hash slot of <paramref name="key"/> (as the cluster computes it).</summary>
    public async Task<int> SlotOfAsync(string key)
    {
        foreach (var server in _servers)
        {
            var reply = await CommandAsync(server.Port, "CLUSTER", "KEYSLOT", key);
            if (reply.StartsWith(':'))
            {
                return int.Parse(reply.AsSpan(1).Trim(), NumberStyles.None, CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException($"no node answered CLUSTER KEYSLOT {key}:\n{Log}");
    }

    /// <summary>
    /// Moves <paramref name="key"/>'s slot, live, from its master to <paramref name="to"/> as <c>redis-cli --cluster
    /// reshard</c> does: <c>CLUSTER SETSLOT … IMPORTING</c> on the target, <c>MIGRATING</c> on the source, the slot's keys
    /// <paramref name="keysPerMigrate"/> at a time by <c>MIGRATE … KEYS</c> (redis-cli's default pipeline is 10, so a
    /// channel's keys can be split over the two masters for a while), then <c>SETSLOT … NODE</c> on the target, the source
    /// and the other masters; returns once every master names the target. Returns how many keys moved.
    /// </summary>
    public async Task<int> MoveSlotAsync(string key, RedisServer to, int keysPerMigrate = 10)
    {
        var move = await BeginSlotMoveAsync(key, to);
        var moved = 0;

        // Bounded: a busy slot gains keys while it moves, but not faster than MIGRATE takes them.
        for (var round = 0; round < 100_000; round++)
        {
            var keys = ParseArray(await CommandAsync(move.From.Port, "CLUSTER", "GETKEYSINSLOT", move.Slot, keysPerMigrate.ToString(CultureInfo.InvariantCulture)));
            if (keys.Count == 0)
            {
                break;
            }

            await MigrateAsync(move, [.. keys]);
            moved += keys.Count;
        }

        await FinishSlotMoveAsync(move);
        return moved;
    }

    /// <summary>A slot on its way from one master to another (<see cref="BeginSlotMoveAsync"/>).</summary>
    public sealed record SlotMove(string Slot, RedisServer From, string FromId, RedisServer To, string ToId);

    /// <summary>
    /// Opens the move of <paramref name="key"/>'s slot to <paramref name="to"/>: <c>IMPORTING</c> on the target,
    /// <c>MIGRATING</c> on the source. Keys then move with <see cref="MigrateAsync"/>, and
    /// <see cref="FinishSlotMoveAsync"/> hands the slot over.
    /// </summary>
    public async Task<SlotMove> BeginSlotMoveAsync(string key, RedisServer to)
    {
        ArgumentNullException.ThrowIfNull(to);
        var slot = (await SlotOfAsync(key)).ToString(CultureInfo.InvariantCulture);
        var from = await MasterOfAsync(key);
        if (from == to)
        {
            throw new ArgumentException($"127.0.0.1:{to.Port} already holds {key}'s slot", nameof(to));
        }

        var move = new SlotMove(slot, from, await NodeIdAsync(from), to, await NodeIdAsync(to));
        await ExpectOkAsync(to.Port, "CLUSTER", "SETSLOT", slot, "IMPORTING", move.FromId);
        await ExpectOkAsync(from.Port, "CLUSTER", "SETSLOT", slot, "MIGRATING", move.ToId);
        return move;
    }

    /// <summary>Moves <paramref name="keys"/> (of the slot being moved) to the target in one <c>MIGRATE … KEYS</c>.</summary>
    public async Task MigrateAsync(SlotMove move, params string[] keys)
    {
        ArgumentNullException.ThrowIfNull(move);
        ArgumentNullException.ThrowIfNull(keys);
        var reply = await CommandAsync(move.From.Port, ["MIGRATE", "127.0.0.1", move.To.Port.ToString(CultureInfo.InvariantCulture), "", "0", "5000", "KEYS", .. keys]);
        if (!reply.StartsWith("+OK", StringComparison.Ordinal) && !reply.StartsWith("+NOKEY", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"MIGRATE of slot {move.Slot} from {move.From.Port} to {move.To.Port} answered {reply.Trim()}");
        }
    }

    /// <summary>
    /// Hands the slot to the target (<c>SETSLOT … NODE</c> on the target, the source and the other masters) and waits
    /// until every node names it.
    /// </summary>
    public async Task FinishSlotMoveAsync(SlotMove move)
    {
        ArgumentNullException.ThrowIfNull(move);
        await ExpectOkAsync(move.To.Port, "CLUSTER", "SETSLOT", move.Slot, "NODE", move.ToId);
        await ExpectOkAsync(move.From.Port, "CLUSTER", "SETSLOT", move.Slot, "NODE", move.ToId);
        foreach (var server in _servers.Where(s => s != move.From && s != move.To))
        {
            // A replica refuses SETSLOT; it learns the change from its master.
            _ = await CommandAsync(server.Port, "CLUSTER", "SETSLOT", move.Slot, "NODE", move.ToId);
        }

        var slot = int.Parse(move.Slot, CultureInfo.InvariantCulture);
        foreach (var server in _servers)
        {
            await WaitUntilAsync(async () => (await CommandAsync(server.Port, "CLUSTER", "NODES")).Split('\n').Any(line => line.StartsWith(move.ToId, StringComparison.Ordinal) && OwnsSlot(line, slot)), $"node {server.Port} to see slot {slot} on {move.To.Port}");
        }
    }

    /// <summary>The masters now, in start order.</summary>
    public async Task<IReadOnlyList<RedisServer>> MastersAsync()
    {
        var masters = new List<RedisServer>();
        foreach (var server in _servers)
        {
            if ((await CommandAsync(server.Port, "INFO", "replication")).Contains("role:master", StringComparison.Ordinal))
            {
                masters.Add(server);
            }
        }

        return masters;
    }

    private static async Task<string> NodeIdAsync(RedisServer server)
    {
        var reply = await CommandAsync(server.Port, "CLUSTER", "MYID");
        var lines = reply.Split("\r\n");
        return lines.Length >= 2 && lines[0].StartsWith('$') ? lines[1] : throw new InvalidOperationException($"CLUSTER MYID on {server.Port} answered '{reply.Trim()}'");
    }

    private static async Task ExpectOkAsync(int port, params string[] args)
    {
        var reply = await CommandAsync(port, args);
        if (!reply.StartsWith("+OK", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"{string.Join(' ', args)} on {port} answered '{reply.Trim()}'");
        }
    }

    // An array of bulk strings (keys here are ASCII): *N, then $len and the string, N times.
    private static List<string> ParseArray(string reply)
    {
        var lines = reply.Split("\r\n");
        if (lines.Length == 0 || !lines[0].StartsWith('*'))
        {
            throw new InvalidOperationException($"expected an array, got '{reply.Trim()}'");
        }

        var count = int.Parse(lines[0].AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture);
        if (lines.Length < 1 + (2 * count))
        {
            throw new InvalidOperationException($"a partial array of {count}: '{reply}'");
        }

        return Enumerable.Range(0, count).Select(i => lines[2 + (2 * i)]).ToList();
    }

    // A CLUSTER NODES line's slot ranges (fields 8 on) include slot.
    private static bool OwnsSlot(string line, int slot)
    {
        var fields = line.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        foreach (var range in fields.Skip(8))
        {
            var bounds = range.Split('-');
            if (!int.TryParse(bounds[0], NumberStyles.None, CultureInfo.InvariantCulture, out var first))
            {
                continue;
            }

            var last = bounds.Length > 1 ? int.Parse(bounds[1], NumberStyles.None, CultureInfo.InvariantCulture) : first;
            if (slot >= first && slot <= last)
            {
                return true;
            }
        }

        return false;
    }

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

using System.Globalization;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

/// <summary>
/// Every Redis key and pub/sub channel name Relay uses, in one place. Scripts get them as <c>KEYS</c> (or, for a key
/// derived from stored data, a prefix in <c>ARGV</c>), never as literals, so a deployment can tell what touches what.
/// </summary>
/// <remarks>
/// Redis Cluster: every script's keys are in one slot. Bus coordination keys (leases, fencing tokens, nodes, interest,
/// nodes' presence indexes) share the hash tag <c>{relay:bus}</c>, the auth directory's keys <c>{relay:auth}</c>, and a
/// channel's keys a tag of their own (<see cref="ChannelPrefix"/>), so channels spread over the masters.
/// </remarks>
public static class RedisKeys
{
    /// <summary>Prefix of every bus pub/sub channel.</summary>
    public const string ChannelNamePrefix = "relay:bus:";

    /// <summary>Prefix of every bus coordination key (hash-tagged: one slot).</summary>
    public const string KeyNamePrefix = "relay:{relay:bus}:";

    /// <summary>The fan-out channels' common name; each shard has its own (<see cref="FanOutShardName"/>).</summary>
    public const string FanOutName = ChannelNamePrefix + "fanout";

    /// <summary>Fan-out says "deliveries may have been lost" here after it takes shards (<c>fanout:&lt;shard&gt;,…</c>); nodes check those shards' channels.</summary>
    public const string ResyncName = ChannelNamePrefix + "resync";

    /// <summary>Apps and keys the auth service publishes (hash; the three auth keys share one Cluster slot).</summary>
    public const string AuthKeys = "relay:{relay:auth}:keys";

    /// <summary>Token-signing public keys the auth service publishes (hash).</summary>
    public const string AuthSigners = "relay:{relay:auth}:signers";

    /// <summary>Bumped on every publish of the auth keys.</summary>
    public const string AuthVersion = "relay:{relay:auth}:version";

    /// <summary><see cref="ResyncName"/> as a channel.</summary>
    public static RedisChannel Resync { get; } = RedisChannel.Literal(ResyncName);

    /// <summary>Live routing instances (sorted set, score = last lease tick, Redis clock).</summary>
    public static RedisKey Routers { get; } = KeyNamePrefix + "routers";

    /// <summary>Live ingress nodes (sorted set, score = last heartbeat, Redis clock).</summary>
    public static RedisKey Nodes { get; } = KeyNamePrefix + "nodes";

    /// <summary>Prefix of a node's interest hash, for the sweep script that finds dead nodes in <see cref="Nodes"/>.</summary>
    public const string InterestKeyPrefix = KeyNamePrefix + "interest:";

    /// <summary>A routing shard's request channel.</summary>
    public static RedisChannel Shard(int shard) => RedisChannel.Literal(ChannelNamePrefix + "shard:" + shard.ToString(CultureInfo.InvariantCulture));

    /// <summary>A process's reply channel.</summary>
    public static RedisChannel Reply(string instance) => RedisChannel.Literal(ReplyName(instance));

    /// <summary>The name of <see cref="Reply"/>.</summary>
    public static string ReplyName(string instance) => ChannelNamePrefix + "reply:" + instance;

    /// <summary>An ingress node's delivery channel (batches from fan-out), as a plain channel (one server, Sentinel).</summary>
    public static RedisChannel Node(string nodeId) => RedisChannel.Literal(NodeName(nodeId));

    /// <summary>The name of <see cref="Node"/>; on a Redis Cluster the bus uses it as a sharded channel.</summary>
    public static string NodeName(string nodeId) => ChannelNamePrefix + "node:" + nodeId;

    /// <summary>A routing shard's lease (string: owner, PX).</summary>
    public static RedisKey Lease(int shard) => KeyNamePrefix + "lease:" + shard.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// The fencing token each shard's lease was last taken with (hash: shard → token, increasing per shard). An append
    /// or presence change carries its shard's token and the channel's <see cref="Position"/> keeps the highest seen, so
    /// the check stays in the channel's slot.
    /// </summary>
    public static RedisKey Fences { get; } = KeyNamePrefix + "fences";

    /// <summary>Every shard's lease, in shard order.</summary>
    public static RedisKey[] Leases(int shards)
    {
        var keys = new RedisKey[shards];
        for (var i = 0; i < shards; i++)
        {
            keys[i] = Lease(i);
        }

        return keys;
    }

    // Fan-out shards: a channel's sequenced messages and the interest changes for it go on its shard's fan-out channel;
    // fan-out processes share the shards by lease, as routing instances do theirs.

    /// <summary>Prefix of a fan-out shard's channel (<c>relay:bus:fanout:&lt;shard&gt;</c>).</summary>
    public const string FanOutShardPrefix = FanOutName + ":";

    /// <summary>Live fan-out processes (sorted set, score = last lease tick, Redis clock).</summary>
    public static RedisKey FanOuts { get; } = KeyNamePrefix + "fanouts";

    /// <summary>The fencing tokens of fan-out's shard leases (hash shard → token, kept by the lease script): a changed token means the lease was taken anew.</summary>
    public static RedisKey FanOutFences { get; } = KeyNamePrefix + "fanout-fences";

    /// <summary>The channel of a fan-out shard: routing publishes the shard's sequenced messages there, nodes their interest changes.</summary>
    public static string FanOutShardName(int shard) => FanOutShardPrefix + shard.ToString(CultureInfo.InvariantCulture);

    /// <summary><see cref="FanOutShardName"/> as a channel.</summary>
    public static RedisChannel FanOutShard(int shard) => RedisChannel.Literal(FanOutShardName(shard));

    /// <summary>A fan-out shard's lease (string: owner, PX).</summary>
    public static RedisKey FanOutLease(int shard) => KeyNamePrefix + "fanout-lease:" + shard.ToString(CultureInfo.InvariantCulture);

    /// <summary>Every fan-out shard's lease, in shard order.</summary>
    public static RedisKey[] FanOutLeases(int shards)
    {
        var keys = new RedisKey[shards];
        for (var i = 0; i < shards; i++)
        {
            keys[i] = FanOutLease(i);
        }

        return keys;
    }

    /// <summary>A node's interest (hash <c>app\nchannel</c> → subscribers).</summary>
    public static RedisKey InterestOf(string nodeId) => InterestKeyPrefix + nodeId;

    /// <summary>The channel prefixes where a node holds presence members (set; written before a member is, so it holds at least those).</summary>
    public static RedisKey NodePresence(string nodeId) => KeyNamePrefix + "presence:" + nodeId;

    /// <summary>The last client-id claim's number (string, INCR; <see cref="Claims"/> carries each claim to every node).</summary>
    public static RedisKey ClaimNumber { get; } = KeyNamePrefix + "claims";

    /// <summary>Client-id claims (MQTT takeover across nodes): JSON, a newline, then the claim's number.</summary>
    public static RedisChannel Claims { get; } = RedisChannel.Literal(ChannelNamePrefix + "claims");

    /// <summary>
    /// The key prefix of an app's MQTT retained messages, hash tag included (<c>relay:{retained:&lt;len(app)&gt;:&lt;app&gt;}:</c>):
    /// <c>topics</c> (hash topic → message) and <c>cleared:&lt;topic&gt;</c> (a clear's epoch and seq, kept a minute).
    /// </summary>
    public static string RetainedPrefix(string app)
    {
        ArgumentException.ThrowIfNullOrEmpty(app);
        return string.Create(CultureInfo.InvariantCulture, $"relay:{{retained:{app.Length}:{app}}}:");
    }

    /// <summary>
    /// A persistent session (MQTT's) of a client id, hash tag included
    /// (<c>relay:{session:&lt;scope&gt;:&lt;len(app)&gt;:&lt;app&gt;:&lt;clientId&gt;}</c>): a hash of <c>claim</c>, <c>ver</c>,
    /// <c>held</c> and <c>state</c> (<see cref="RedisSessionStore"/>), expiring with the session.
    /// </summary>
    public static RedisKey Session(string scope, string app, string clientId)
    {
        ArgumentException.ThrowIfNullOrEmpty(scope);
        ArgumentException.ThrowIfNullOrEmpty(app);
        ArgumentNullException.ThrowIfNull(clientId);
        return string.Create(CultureInfo.InvariantCulture, $"relay:{{session:{scope}:{app.Length}:{app}:{clientId}}}");
    }

    /// <summary>
    /// The receipts of a session's client (<c>relay:{session:…}:received</c>, the session's hash tag): a hash of packet id
    /// → idempotency id of the MQTT QoS 2 publishes received and not released (<see cref="RedisSessionStore.ReceiveAsync"/>).
    /// </summary>
    public static RedisKey SessionReceipts(string scope, string app, string clientId) => Session(scope, app, clientId).Append(":received");

    /// <summary>
    /// The key prefix of the last wills across nodes, one hash tag for all (<c>relay:{wills}:</c>, so each script of
    /// <see cref="RedisWillStore"/> touches one slot): <c>beats</c> (hash node → its last beat, Redis clock),
    /// <c>n:&lt;node&gt;</c> (set: the entries naming that node), <c>due</c> (sorted set: delayed wills taken from dead
    /// nodes, score = when due) and <see cref="Will"/>'s entries.
    /// </summary>
    public const string WillsPrefix = "relay:{wills}:";

    /// <summary>
    /// The will entry of a client id (<c>relay:{wills}:w:&lt;scope&gt;:&lt;len(app)&gt;:&lt;app&gt;:&lt;clientId&gt;</c>): a hash of
    /// <c>node</c> (empty: the connection has no will another node may publish), <c>token</c> (its connection's), <c>will</c>,
    /// <c>delay</c> (ms), once taken from a dead node and not due yet <c>due</c>; once published by another node, only
    /// <c>token</c> and <c>taken</c>, for an hour.
    /// </summary>
    public static RedisKey Will(string scope, string app, string clientId)
    {
        ArgumentException.ThrowIfNullOrEmpty(scope);
        ArgumentException.ThrowIfNullOrEmpty(app);
        ArgumentNullException.ThrowIfNull(clientId);
        return string.Create(CultureInfo.InvariantCulture, $"{WillsPrefix}w:{scope}:{app.Length}:{app}:{clientId}");
    }

    /// <summary>
    /// The key prefix of a shared subscription's group, hash tag included
    /// (<c>relay:{share:&lt;len(app)&gt;:&lt;app&gt;:&lt;len(group)&gt;:&lt;group&gt;:&lt;filter&gt;}:</c>): <c>nodes</c> (sorted set: the
    /// processes with an active member, score = lease end, Redis clock), <c>turn</c> (the round robin's counter) and
    /// <c>m:&lt;len(channel)&gt;:&lt;channel&gt;:&lt;epoch&gt;:&lt;seq&gt;</c> (who delivers that message, PX <see cref="RedisBus"/>'s claim TTL).
    /// </summary>
    public static string SharePrefix(string app, string group, string filter)
    {
        ArgumentException.ThrowIfNullOrEmpty(app);
        ArgumentException.ThrowIfNullOrEmpty(group);
        ArgumentException.ThrowIfNullOrEmpty(filter);
        return string.Create(CultureInfo.InvariantCulture, $"relay:{{share:{app.Length}:{app}:{group.Length}:{group}:{filter}}}:");
    }

    /// <summary>
    /// The key prefix of an app's connection counts across nodes, hash tag included
    /// (<c>relay:{conns:&lt;len(app)&gt;:&lt;app&gt;}:</c>): <c>counts</c> (hash process → connections) and <c>beats</c>
    /// (hash process → its last heartbeat, Redis clock, ms).
    /// </summary>
    public static string ConnectionsPrefix(string app)
    {
        ArgumentException.ThrowIfNullOrEmpty(app);
        return string.Create(CultureInfo.InvariantCulture, $"relay:{{conns:{app.Length}:{app}}}:");
    }

    /// <summary>The key prefix of a channel, hash tag included: <c>relay:{&lt;len(app)&gt;:&lt;app&gt;:&lt;channel&gt;}:</c>.</summary>
    public static string ChannelPrefix(string app, string channel)
    {
        ArgumentException.ThrowIfNullOrEmpty(app);
        ArgumentException.ThrowIfNullOrEmpty(channel);
        return string.Create(CultureInfo.InvariantCulture, $"relay:{{{app.Length}:{app}:{channel}}}:");
    }

    /// <summary>
    /// A channel's position (hash: <c>epoch</c>, <c>seq</c>, <c>pseq</c> (the last presence event's number in the epoch)
    /// and, once a fenced writer wrote, <c>fence</c>).
    /// </summary>
    public static RedisKey Position(string prefix) => prefix + "pos";

    /// <summary>A channel's history (sorted set by seq).</summary>
    public static RedisKey Log(string prefix) => prefix + "log";

    /// <summary>A message id's record in the dedupe window (string <c>epoch:seq</c>).</summary>
    public static RedisKey Id(string prefix, string id) => prefix + "id:" + id;

    /// <summary>
    /// What a sender's numbered publishes stored on a channel (sorted set, score = the sender's number, member
    /// <c>number:item:seq:epoch</c>): a repeat of one is answered with its seqs. Numbers below the sender's floor go.
    /// </summary>
    public static RedisKey Origin(string prefix, string sender) => prefix + "o:" + sender;

    /// <summary>A channel's presence members (hash <c>clientId\nconnectionId</c> → <c>nodeId\nbody</c>).</summary>
    public static RedisKey Members(string prefix) => prefix + "members";

    /// <summary>A channel's present clients (hash clientId → connections).</summary>
    public static RedisKey Clients(string prefix) => prefix + "clients";

    /// <summary>A channel's recent presence events (list, oldest first, each as published to fan-out), for nodes to read back.</summary>
    public static RedisKey PresenceLog(string prefix) => prefix + "plog";
}

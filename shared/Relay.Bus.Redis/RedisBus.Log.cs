using Microsoft.Extensions.Logging;

namespace Relay.Bus.Redis;

public sealed partial class RedisBus
{
    [LoggerMessage(EventId = 2000, Level = LogLevel.Information, Message = "Redis bus connected to {Configuration} as {Instance}")]
    private static partial void LogConnected(ILogger logger, string configuration, string instance);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Warning, Message = "Dropped a malformed bus frame on {Channel}")]
    private static partial void LogBadFrame(ILogger logger, string channel, Exception error);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Information, Message = "Routing shard {Shard} now owned by {Instance}")]
    private static partial void LogShardOwned(ILogger logger, int shard, string instance);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Information, Message = "Routing shard {Shard} handed over by {Instance}")]
    private static partial void LogShardLost(ILogger logger, int shard, string instance);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Warning, Message = "Could not renew routing leases: {Reason}")]
    private static partial void LogLeaseFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 2005, Level = LogLevel.Error, Message = "A routing request failed")]
    private static partial void LogRoutingFailed(ILogger logger, Exception error);

    [LoggerMessage(EventId = 2006, Level = LogLevel.Information, Message = "Ingress node {Node} is gone; its interest and {Members} presence members were removed")]
    private static partial void LogNodeGone(ILogger logger, string node, long members);

    [LoggerMessage(EventId = 2007, Level = LogLevel.Warning, Message = "Fan-out could not sweep nodes: {Reason}")]
    private static partial void LogSweepFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 2008, Level = LogLevel.Warning, Message = "Node {Node} could not send its heartbeat: {Reason}")]
    private static partial void LogHeartbeatFailed(ILogger logger, string node, string reason);

    [LoggerMessage(EventId = 2014, Level = LogLevel.Warning, Message = "Node {Node} was gone from Redis (swept while its heartbeats failed, or Redis lost it) and registered again; its interest is written again and its channels checked")]
    private static partial void LogNodeRegisteredAgain(ILogger logger, string node);

    [LoggerMessage(EventId = 2013, Level = LogLevel.Warning, Message = "Node {Node} could not write an interest change ({Reason}); its whole interest is written again with the next heartbeat")]
    private static partial void LogInterestFailed(ILogger logger, string node, string reason);

    [LoggerMessage(EventId = 2012, Level = LogLevel.Warning, Message = "Subscribing to {Channel} was not confirmed ({Reason}); it is made again on the next reconnect")]
    private static partial void LogSubscribeLater(ILogger logger, string channel, string reason);

    [LoggerMessage(EventId = 2011, Level = LogLevel.Error, Message = "A bus handler failed")]
    private static partial void LogHandlerFailed(ILogger logger, Exception error);

    [LoggerMessage(EventId = 2030, Level = LogLevel.Information, Message = "Fan-out shards {Shards} now held by {Instance}")]
    private static partial void LogFanOutShardsTaken(ILogger logger, string shards, string instance);

    [LoggerMessage(EventId = 2031, Level = LogLevel.Information, Message = "Fan-out shards {Shards} handed over by {Instance}")]
    private static partial void LogFanOutShardsLost(ILogger logger, string shards, string instance);

    [LoggerMessage(EventId = 2032, Level = LogLevel.Warning, Message = "Fan-out lease on shards {Shards} lapsed before it was renewed (paused or cut off); their deliveries were dropped meanwhile and nodes resync them")]
    private static partial void LogFanOutLeaseLapsed(ILogger logger, string shards);

    [LoggerMessage(EventId = 2033, Level = LogLevel.Warning, Message = "Could not renew fan-out leases: {Reason}")]
    private static partial void LogFanOutLeaseFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 2060, Level = LogLevel.Warning, Message = "Could not renew this process's lease in the shared subscription group {Group}: {Reason}; it stops being chosen for the group's messages once the lease ends (Relay:Redis:NodeTtl)")]
    private static partial void LogShareRenewFailed(ILogger logger, string group, string reason);
}

using Microsoft.Extensions.Logging;

namespace Relay.Bus.Dapr;

public sealed partial class DaprBus
{
    [LoggerMessage(EventId = 2100, Level = LogLevel.Information, Message = "Dapr bus forwards {Shards} fan-out shards' sequenced messages to topic {Topic}")]
    private static partial void LogForwarding(ILogger logger, int shards, string topic);

    [LoggerMessage(EventId = 2101, Level = LogLevel.Error, Message = "Dapr bus cannot forward sequenced messages: {Reason}")]
    private static partial void LogForwardFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Error, Message = "A routing request failed")]
    private static partial void LogRoutingFailed(ILogger logger, Exception error);

    [LoggerMessage(EventId = 2103, Level = LogLevel.Warning, Message = "Dropped a malformed Dapr bus frame ({What})")]
    internal static partial void LogBadFrame(ILogger logger, string what, Exception error);

    [LoggerMessage(EventId = 2105, Level = LogLevel.Warning, Message = "Could not tell fan-out an interest change directly ({Reason}); it goes on the interest topic")]
    private static partial void LogInterestByTopic(ILogger logger, string reason);

    [LoggerMessage(EventId = 2104, Level = LogLevel.Warning, Message = "A bus handler failed")]
    private static partial void LogHandlerFailed(ILogger logger, Exception error);

    [LoggerMessage(EventId = 2106, Level = LogLevel.Information, Message = "Fan-out took shards {Shards} ({Instance}) and passed on the {Kept} messages it kept of them")]
    private static partial void LogFanOutShardsTaken(ILogger logger, string shards, string instance, int kept);

    [LoggerMessage(EventId = 2107, Level = LogLevel.Warning, Message = "Fan-out could not renew its shard leases or reach Redis: {Reason}")]
    private static partial void LogFanOutLeaseFailed(ILogger logger, string reason);

    [LoggerMessage(EventId = 2108, Level = LogLevel.Warning, Message = "An interest change of node {Node} for {Channel} was acknowledged by {Acks} fan-out instances only within {Seconds} s; the node sends it by topic")]
    private static partial void LogInterestNotAcknowledged(ILogger logger, string node, string channel, int acks, double seconds);
}

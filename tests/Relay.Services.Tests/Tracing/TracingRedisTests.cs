namespace Relay.Services.Tests.Tracing;

public sealed class TracingRedisTests(RedisBusFixture redis) : TracingSpec, IClassFixture<RedisBusFixture>
{
    protected override void ConfigureBus(IDictionary<string, string?> settings) => redis.AddTo(settings);

    /// <summary>
    /// The Redis calls that sequence the message (the append script, by its hash) are spans of the publish's trace,
    /// from StackExchange.Redis's OpenTelemetry instrumentation.
    /// </summary>
    protected override async Task AssertBusSpansAsync(byte[] traceId) =>
        Assert.True(await ExportedWithAsync(traceId, "EVALSHA", "redis"), "no Redis span (EVALSHA) in the exported batches carrying the publish's trace");
}

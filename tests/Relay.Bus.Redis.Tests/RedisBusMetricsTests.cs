using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Core.Protocol;

namespace Relay.Bus.Redis.Tests;

/// <summary>
/// The Redis bus's meter (<c>Relay.Bus.Redis</c>) counts what the dashboards and alerts read: a routing request nobody
/// answered ends in 50300 and is counted failed; a routing instance's held shards show on its gauge.
/// </summary>
public sealed class RedisBusMetricsTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(15);

    private readonly TestBuses _buses = new(redis.Server, TimeSpan.FromSeconds(1));

    // One meter factory per bus, as each process has its own: the listener tells the buses apart by the factory.
    private readonly ServiceProvider _callerServices = new ServiceCollection().AddMetrics().BuildServiceProvider();
    private readonly ServiceProvider _routingServices = new ServiceCollection().AddMetrics().BuildServiceProvider();

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _buses.DisposeAsync();
        await _callerServices.DisposeAsync();
        await _routingServices.DisposeAsync();
    }

    [Fact(Timeout = 60_000)]
    public async Task ARequestNoRoutingInstanceAnswers_IsCountedFailed_AndAServingInstanceShowsItsShards()
    {
        var callerMeters = _callerServices.GetRequiredService<IMeterFactory>();
        var routingMeters = _routingServices.GetRequiredService<IMeterFactory>();
        var caller = _buses.Make(meters: callerMeters);
        var request = new PublishRequest("test", "metrics-" + Guid.NewGuid().ToString("N")[..8], [new PublishItem(Name: null, "1"u8.ToArray(), DataIsJson: true, Id: null)], ClientId: null, TraceParent: null);

        // Nobody serves routing: the request waits out RequestTimeout (1 s) and the caller is told 50300.
        var reply = await caller.SendToRoutingAsync(request, CancellationToken.None).AsTask().WaitAsync(s_wait);
        Assert.Equal(ErrorCodes.Unavailable, Assert.IsType<ErrorReply>(reply).Error.Code);
        Assert.Equal(1, MeterReading.Read(callerMeters, "relay.redis.routing_requests_failed"));
        Assert.Equal(0, MeterReading.Read(callerMeters, "relay.redis.routing_shards_held"));

        // An instance that serves routing takes every shard (it is alone) and its gauge says so.
        var routing = _buses.Make(meters: routingMeters);
        using var serving = routing.ServeRouting(new Answering());
        var deadline = DateTime.UtcNow + s_wait;
        while (MeterReading.Read(routingMeters, "relay.redis.routing_shards_held") < routing.Options.Shards)
        {
            Assert.True(DateTime.UtcNow < deadline, $"{MeterReading.Read(routingMeters, "relay.redis.routing_shards_held")} of {routing.Options.Shards} shards held");
            await Task.Delay(50);
        }

        Assert.IsType<PublishReply>(await caller.SendToRoutingAsync(request, CancellationToken.None).AsTask().WaitAsync(s_wait));
        Assert.Equal(1, MeterReading.Read(callerMeters, "relay.redis.routing_requests_failed"));
    }

    private sealed class Answering : IRoutingHandler
    {
        public ValueTask<RoutingReply> HandleAsync(RoutingRequest request, CancellationToken cancellationToken) =>
            ValueTask.FromResult<RoutingReply>(new PublishReply([1], "e1"));
    }
}

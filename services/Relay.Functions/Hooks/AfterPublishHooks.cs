using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Bus.Routing;
using Relay.Functions.Calls;
using Relay.Functions.Delivery;

namespace Relay.Functions.Hooks;

/// <summary>
/// Sends acknowledged publishes to their namespace's after-publish hook, off the publish's path: the ack never waits for
/// it. Queued (bounded, shared by every namespace), retried with backoff, dead-lettered after the last try.
/// </summary>
internal sealed class AfterPublishHooks : BackgroundService
{
    /// <summary>The <c>kind</c> of these calls in metrics and dead letters.</summary>
    public const string Kind = "after_publish";

    private readonly DeliveryQueue _queue;
    private readonly TimeProvider _time;

    public AfterPublishHooks(IOptions<FunctionsOptions> options, FunctionCaller caller, TimeProvider time, FunctionsMetrics metrics, DeadLetters deadLetters, ILogger<AfterPublishHooks> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        _time = time;
        _queue = new DeliveryQueue(Kind, "after-publish hooks", (item, _, stopping) =>
        {
            var call = (AfterPublishEvent)item;
            return caller.CallAsync(call.Hook.Target, call.Body, call.Hook.Timeout, stopping);
        }, options.Value, time, metrics, deadLetters, logger);
    }

    /// <summary>Queues an acknowledged publish; never waits.</summary>
    public void Enqueue(ResolvedHook hook, PublishRequest request, PublishReply reply)
    {
        var id = $"{request.App}:{request.Channel}:{reply.Epoch}:{reply.Seqs[0]}";
        _queue.TryEnqueue(new AfterPublishEvent(hook, id, HookJson.AfterPublish(request, reply, _time.GetUtcNow().ToUnixTimeMilliseconds())));
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) => _queue.RunAsync(stoppingToken);
}

using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Relay.Bus.Dapr;

/// <summary>
/// What the sidecar calls on the app: <c>GET /dapr/subscribe</c> (the programmatic subscriptions of the roles this
/// process plays), the topics' routes (<c>/dapr-relay/events/…</c>, CloudEvents 1.0 in, <c>{"status":…}</c> out) and the
/// invoked methods (<c>/dapr-relay/routing</c>, <c>/dapr-relay/interest</c>, <c>/dapr-relay/channels</c>).
/// </summary>
public static class DaprBusEndpoints
{
    internal const string RoutingMethod = "dapr-relay/routing";
    internal const string ChannelsMethod = "dapr-relay/channels";
    internal const string InterestMethod = "dapr-relay/interest";

    private static readonly IResult Success = Results.Json(new StatusJson("SUCCESS"));
    private static readonly IResult Drop = Results.Json(new StatusJson("DROP"));

    /// <summary>Maps the Dapr bus's endpoints when the host's bus is the Dapr bus; does nothing otherwise.</summary>
    public static IEndpointRouteBuilder MapRelayDaprBus(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        if (endpoints.ServiceProvider.GetService<DaprBus>() is not { } bus)
        {
            return endpoints;
        }

        var logger = endpoints.ServiceProvider.GetRequiredService<ILogger<DaprBus>>();
        endpoints.MapGet("/dapr/subscribe", () => Results.Json(Subscriptions(bus)));
        endpoints.MapPost("/" + RoutingMethod, async (HttpContext context) =>
        {
            var frame = await ReadAllAsync(context).ConfigureAwait(false);
            var reply = await bus.HandleRoutingAsync(frame, context.RequestAborted).ConfigureAwait(false);
            return Results.Bytes(reply, "application/octet-stream");
        });
        endpoints.MapGet("/" + ChannelsMethod, async (string app, string? prefix, CancellationToken cancellationToken) =>
        {
            var counts = await bus.QueryChannelsAsync(app, string.IsNullOrEmpty(prefix) ? null : prefix, cancellationToken).ConfigureAwait(false);
            return Results.Json(counts.Select(static c => new ChannelCountJson(c.Channel, c.Subscribers)).ToList());
        });
        endpoints.MapPost("/dapr-relay/events/sequenced", (HttpContext context, CancellationToken _) => OnEventAsync(context, logger, bus.OnSequenced));
        endpoints.MapPost("/dapr-relay/events/interest", (HttpContext context, CancellationToken _) => OnEventAsync(context, logger, bus.OnInterest));
        endpoints.MapPost("/" + InterestMethod, async (HttpContext context) =>
        {
            var data = await ReadAllAsync(context).ConfigureAwait(false);
            context.Response.StatusCode = await bus.OnInterestInvokedAsync(data).ConfigureAwait(false) ? StatusCodes.Status204NoContent : StatusCodes.Status503ServiceUnavailable;
        });
        endpoints.MapPost("/dapr-relay/events/node/{nodeId}", (HttpContext context, string nodeId) => OnEventAsync(context, logger, data => bus.OnNode(nodeId, data)));
        return endpoints;
    }

    private static List<SubscriptionJson> Subscriptions(DaprBus bus)
    {
        var options = bus.Options;
        var subscriptions = new List<SubscriptionJson>();
        if (bus.ServesFanOut)
        {
            subscriptions.Add(new SubscriptionJson(options.PubSub, options.SequencedTopic, "/dapr-relay/events/sequenced"));
            subscriptions.Add(new SubscriptionJson(options.PubSub, options.InterestTopic, "/dapr-relay/events/interest"));
        }

        foreach (var node in bus.NodeIds)
        {
            subscriptions.Add(new SubscriptionJson(options.PubSub, options.NodeTopic(node), "/dapr-relay/events/node/" + Uri.EscapeDataString(node)));
        }

        return subscriptions;
    }

    // A CloudEvent whose data_base64 is one of the bus's messages: SUCCESS once handed to the role, DROP when this
    // process does not play it (any more) or the event is not one of ours; never RETRY, since what a role could not
    // take now is read back from history, not redelivered.
    private static async Task<IResult> OnEventAsync(HttpContext context, ILogger logger, Func<ReadOnlyMemory<byte>, bool> handle)
    {
        byte[] data;
        try
        {
            using var envelope = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted).ConfigureAwait(false);
            if (!envelope.RootElement.TryGetProperty("data_base64", out var encoded) || encoded.GetString() is not { } text)
            {
                throw new FormatException("the CloudEvent has no data_base64 (the bus publishes application/octet-stream)");
            }

            data = Convert.FromBase64String(text);
            return handle(data) ? Success : Drop;
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException)
        {
            DaprBus.LogBadFrame(logger, context.Request.Path, e);
            return Drop;
        }
    }

    private static async Task<byte[]> ReadAllAsync(HttpContext context)
    {
        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body, context.RequestAborted).ConfigureAwait(false);
        return body.ToArray();
    }

    internal sealed record SubscriptionJson(
        [property: JsonPropertyName("pubsubname")] string PubSubName,
        [property: JsonPropertyName("topic")] string Topic,
        [property: JsonPropertyName("route")] string Route);

    internal sealed record StatusJson([property: JsonPropertyName("status")] string Status);

    internal sealed record ChannelCountJson(
        [property: JsonPropertyName("channel")] string Channel,
        [property: JsonPropertyName("subscribers")] int Subscribers);
}

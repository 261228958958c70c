using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Relay.Testing;

/// <summary>
/// A stand-in for <c>daprd</c> (there is none here), for tests only: one per app process, on a loopback port, over a
/// real redis-server that every stand-in of a test shares. It implements the parts of the Dapr runtime contract the
/// Dapr bus uses, as Dapr documents them:
/// <list type="bullet">
/// <item>the HTTP publish API, <c>POST /v1.0/publish/{pubsub}/{topic}</c> (204; 404 for an unknown component), which
/// wraps the body in a CloudEvents 1.0 envelope (<c>datacontenttype</c> from Content-Type, <c>data</c> for JSON and
/// text, <c>data_base64</c> for binary; a body sent as <c>application/cloudevents+json</c> is kept and completed), and
/// the bulk form <c>POST /v1.0-alpha1/publish/bulk/{pubsub}/{topic}</c>;</item>
/// <item>programmatic subscription: once the app is attached, <c>GET /dapr/subscribe</c> on the app, then delivery of
/// each event to its route as <c>application/cloudevents+json</c>, honouring the answer as Dapr does: HTTP 2xx with
/// <c>{"status":"SUCCESS"}</c> or no status is success, <c>DROP</c> drops, <c>RETRY</c> retries, 404 drops, any other
/// status retries;</item>
/// <item>service invocation, <c>/v1.0/invoke/{app-id}/method/{method}</c>, forwarded to an attached instance of the app.</item>
/// </list>
/// Topics are Redis streams named after the topic and each app id is a consumer group on them, as the
/// <c>pubsub.redis</c> component does: instances of one app id share a topic's messages, distinct app ids each get all.
/// <see cref="ConsumerId"/> names the group instead, as the component's <c>consumerID</c> metadata does
/// (<c>"{podName}"</c>: every instance of an app id gets every message).
/// A message not acknowledged is redelivered after <see cref="RedeliverAfter"/> (the component's processing timeout).
/// Dapr pub/sub is at least once and unordered: <see cref="Copies"/> posts each delivery more than once and
/// <see cref="ReorderWindow"/> shuffles deliveries, so a test can make both happen on demand.
/// </summary>
public sealed class DaprSidecar : IAsyncDisposable
{
    /// <summary>The pub/sub component name the stand-in serves unless told others.</summary>
    public const string DefaultPubSub = "relay-pubsub";

    // Where the stand-ins of one Redis find the instances of an app id (service invocation, name resolution).
    private const string AppsKeyPrefix = "dapr-standin:app:";

    // An empty read waits this long before the next XREADGROUP (the client cannot block a multiplexed connection, as
    // the component's XREADGROUP BLOCK does), doubling while the topic stays empty up to IdlePollMax: polling every
    // topic of every stand-in each 5 ms kept a loaded 2-core machine busy enough to change the timing of what a test
    // measures (HttpRefusalDaprTests counted twice Kestrel's drain-race warnings the Redis bus's run did).
    private static readonly TimeSpan IdlePoll = TimeSpan.FromMilliseconds(5);
    private static readonly TimeSpan IdlePollMax = TimeSpan.FromMilliseconds(40);

    private readonly WebApplication _web;
    private readonly ConnectionMultiplexer _redis;
    private readonly IDatabase _database;
    private readonly HashSet<string> _components;
    private readonly CancellationTokenSource _stopping = new();
    private readonly HttpClient _http = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5) }) { Timeout = TimeSpan.FromSeconds(30) };
    private readonly List<Task> _loops = [];
    private readonly ConcurrentQueue<string> _errors = new();
    private readonly ConcurrentDictionary<string, long> _publishedBytes = new(StringComparer.Ordinal);
    private readonly Random _random;
    private readonly string _consumer;
    private Uri? _app;
    private string? _consumerId;
    private long _published;
    private long _posted;
    private long _succeeded;
    private long _retried;
    private long _dropped;

    private DaprSidecar(WebApplication web, ConnectionMultiplexer redis, string appId, IEnumerable<string> components, int seed)
    {
        _web = web;
        _redis = redis;
        _database = redis.GetDatabase();
        AppId = appId;
        _components = [.. components];
        _random = new Random(seed);
        _consumer = appId + "-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
    }

    /// <summary>The app id this sidecar runs beside (the CloudEvent <c>source</c> of what it publishes, its consumer group).</summary>
    public string AppId { get; }

    /// <summary>The sidecar's HTTP API (what <c>DAPR_HTTP_PORT</c> names for a real sidecar).</summary>
    public Uri HttpEndpoint { get; private set; } = null!;

    /// <summary>The port of <see cref="HttpEndpoint"/>.</summary>
    public int HttpPort => HttpEndpoint.Port;

    /// <summary>
    /// The consumer group this sidecar reads topics in: the app id unless set (before the app is attached), as the
    /// component's <c>consumerID</c> metadata, which a deployment may template per pod (<c>{podName}</c>).
    /// </summary>
    public string ConsumerId
    {
        get => _consumerId ?? AppId;
        set => _consumerId = value;
    }

    /// <summary>Each delivery attempt posts the event this many times (2: every message is redelivered once).</summary>
    public int Copies { get; set; } = 1;

    /// <summary>Deliveries read together are shuffled within windows of this many (0 or 1: in stream order).</summary>
    public int ReorderWindow { get; set; }

    /// <summary>How long a delivered message may stay unacknowledged before it is delivered again.</summary>
    public TimeSpan RedeliverAfter { get; set; } = TimeSpan.FromMilliseconds(300);

    /// <summary>Messages accepted by the publish APIs of this sidecar.</summary>
    public long Published => Interlocked.Read(ref _published);

    /// <summary>Bytes of message bodies (before their envelopes) the publish APIs of this sidecar accepted for <paramref name="topic"/>.</summary>
    public long PublishedBytes(string topic) => _publishedBytes.TryGetValue(topic, out var bytes) ? bytes : 0;

    /// <summary>Events posted to the app (copies and retries included).</summary>
    public long Posted => Interlocked.Read(ref _posted);

    /// <summary>Posts the app answered with success.</summary>
    public long Succeeded => Interlocked.Read(ref _succeeded);

    /// <summary>Posts the app answered with RETRY or a status Dapr retries.</summary>
    public long Retried => Interlocked.Read(ref _retried);

    /// <summary>Posts the app answered with DROP or 404.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>The subscriptions the app declared (<c>pubsub/topic -> route</c>), once attached.</summary>
    public IReadOnlyList<string> Subscriptions { get; private set; } = [];

    /// <summary>What went wrong on the way (unreachable app, bad subscription answer), for a failing test's message.</summary>
    public IReadOnlyCollection<string> Errors => _errors;

    /// <summary>Starts a sidecar for <paramref name="appId"/> on a free loopback port, over the Redis at <paramref name="redisConfiguration"/>.</summary>
    public static async Task<DaprSidecar> StartAsync(string appId, string redisConfiguration, int seed = 12, params string[] components)
    {
        ArgumentException.ThrowIfNullOrEmpty(appId);
        var redis = await ConnectionMultiplexer.ConnectAsync(RedisServer.QuickClientOptions(redisConfiguration)).ConfigureAwait(false);
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddRouting();
        var web = builder.Build();
        var sidecar = new DaprSidecar(web, redis, appId, components.Length == 0 ? [DefaultPubSub] : components, seed);
        web.MapPost("/v1.0/publish/{pubsub}/{**topic}", sidecar.PublishAsync);
        web.MapPost("/v1.0-alpha1/publish/bulk/{pubsub}/{**topic}", sidecar.PublishBulkAsync);
        web.Map("/v1.0/invoke/{appId}/method/{**method}", sidecar.InvokeAsync);
        web.MapGet("/v1.0/healthz", static () => Results.NoContent());
        await web.StartAsync().ConfigureAwait(false);
        var address = web.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        sidecar.HttpEndpoint = new Uri(address.TrimEnd('/') + "/");
        return sidecar;
    }

    /// <summary>
    /// The app listens now (daprd waits for the app's port): registers it for invocation, reads its subscriptions from
    /// <c>GET /dapr/subscribe</c> and starts delivering them.
    /// </summary>
    public async Task AttachAppAsync(Uri app)
    {
        ArgumentNullException.ThrowIfNull(app);
        _app = app;
        await _database.SetAddAsync(AppsKeyPrefix + AppId, app.ToString()).ConfigureAwait(false);
        using var answer = await _http.GetAsync(new Uri(app, "dapr/subscribe"), _stopping.Token).ConfigureAwait(false);
        if (answer.StatusCode == HttpStatusCode.NotFound)
        {
            return;
        }

        answer.EnsureSuccessStatusCode();
        var declared = JsonNode.Parse(await answer.Content.ReadAsStringAsync(_stopping.Token).ConfigureAwait(false))?.AsArray()
            ?? throw new InvalidOperationException("GET /dapr/subscribe answered null; Dapr expects a JSON array");
        var subscriptions = new List<string>();
        foreach (var entry in declared)
        {
            var pubsub = (string?)entry?["pubsubname"] ?? throw new InvalidOperationException("a subscription without pubsubname");
            var topic = (string?)entry?["topic"] ?? throw new InvalidOperationException("a subscription without topic");

            // v1: "route"; v2: "routes": {"rules": [...], "default": "..."} (the stand-in takes the default route).
            var route = (string?)entry?["route"] ?? (string?)entry?["routes"]?["default"]
                ?? throw new InvalidOperationException($"the subscription to {topic} names no route");
            if (!_components.Contains(pubsub))
            {
                _errors.Enqueue($"subscription to {topic} names pub/sub component '{pubsub}', which this sidecar does not have");
                continue;
            }

            subscriptions.Add($"{pubsub}/{topic} -> {route}");
            await _database.StreamCreateConsumerGroupAsync(topic, ConsumerId, "0", createStream: true).ContinueWith(static _ => { }, TaskScheduler.Default).ConfigureAwait(false);
            var target = new Uri(app, route.TrimStart('/'));
            _loops.Add(Task.Run(() => DeliverLoopAsync(topic, target)));
        }

        Subscriptions = subscriptions;
    }

    private async Task<IResult> PublishAsync(HttpContext context, string pubsub, string topic)
    {
        if (!_components.Contains(pubsub))
        {
            return Error(HttpStatusCode.NotFound, "ERR_PUBSUB_NOT_FOUND", $"pubsub {pubsub} not found");
        }

        if (string.Equals(context.Request.Query["metadata.rawPayload"], "true", StringComparison.OrdinalIgnoreCase))
        {
            return Error(HttpStatusCode.BadRequest, "ERR_PUBSUB_PUBLISH_MESSAGE", "the stand-in does not implement raw payloads");
        }

        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body, context.RequestAborted).ConfigureAwait(false);
        var envelope = Envelope(pubsub, topic, body.ToArray(), context.Request.ContentType, context.Request.Headers["traceparent"]);
        if (envelope is null)
        {
            return Error(HttpStatusCode.BadRequest, "ERR_PUBSUB_CLOUD_EVENTS_SER", "the body is not a CloudEvent");
        }

        await _database.StreamAddAsync(topic, "data", envelope).ConfigureAwait(false);
        Interlocked.Increment(ref _published);
        _publishedBytes.AddOrUpdate(topic, body.Length, (_, total) => total + body.Length);
        return Results.NoContent();
    }

    // Body: [{"entryId": "...", "event": <JSON or string>, "contentType": "...", "metadata": {...}}]. Each entry is
    // enveloped as a single publish would be; a string event of a binary content type is its base64.
    private async Task<IResult> PublishBulkAsync(HttpContext context, string pubsub, string topic)
    {
        if (!_components.Contains(pubsub))
        {
            return Error(HttpStatusCode.NotFound, "ERR_PUBSUB_NOT_FOUND", $"pubsub {pubsub} not found");
        }

        var entries = (await JsonNode.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted).ConfigureAwait(false))?.AsArray();
        if (entries is null)
        {
            return Error(HttpStatusCode.BadRequest, "ERR_PUBSUB_EVENTS_SER", "the body is not a JSON array of entries");
        }

        var batch = _database.CreateBatch();
        var adds = new List<Task>();
        foreach (var entry in entries)
        {
            var contentType = (string?)entry?["contentType"] ?? "text/plain";
            var value = entry?["event"];
            byte[] bytes = value is JsonValue text && text.TryGetValue<string>(out var s)
                ? (IsJson(contentType) ? Encoding.UTF8.GetBytes(s) : IsText(contentType) ? Encoding.UTF8.GetBytes(s) : Convert.FromBase64String(s))
                : Encoding.UTF8.GetBytes(value?.ToJsonString() ?? "null");
            var envelope = Envelope(pubsub, topic, bytes, contentType, context.Request.Headers["traceparent"]);
            if (envelope is null)
            {
                return Error(HttpStatusCode.BadRequest, "ERR_PUBSUB_CLOUD_EVENTS_SER", $"entry {(string?)entry?["entryId"]} is not a CloudEvent");
            }

            adds.Add(batch.StreamAddAsync(topic, "data", envelope));
            _publishedBytes.AddOrUpdate(topic, bytes.Length, (_, total) => total + bytes.Length);
        }

        batch.Execute();
        await Task.WhenAll(adds).ConfigureAwait(false);
        Interlocked.Add(ref _published, entries.Count);
        return Results.NoContent();
    }

    private async Task InvokeAsync(HttpContext context, string appId, string method)
    {
        var instances = await _database.SetMembersAsync(AppsKeyPrefix + appId).ConfigureAwait(false);
        if (instances.Length == 0)
        {
            await Error(HttpStatusCode.InternalServerError, "ERR_DIRECT_INVOKE", $"failed to resolve address for '{appId}'").ExecuteAsync(context).ConfigureAwait(false);
            return;
        }

        var target = new Uri(new Uri((string)instances[Random.Shared.Next(instances.Length)]!), method + context.Request.QueryString);
        using var forward = new HttpRequestMessage(new HttpMethod(context.Request.Method), target);
        if (context.Request.ContentLength is > 0 || context.Request.Headers.TransferEncoding.Count > 0)
        {
            forward.Content = new StreamContent(context.Request.Body);
            if (context.Request.ContentType is { } type)
            {
                forward.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(type);
            }
        }

        if (context.Request.Headers["traceparent"] is { Count: > 0 } traceParent)
        {
            forward.Headers.TryAddWithoutValidation("traceparent", traceParent.ToString());
        }

        try
        {
            using var answer = await _http.SendAsync(forward, HttpCompletionOption.ResponseHeadersRead, context.RequestAborted).ConfigureAwait(false);
            context.Response.StatusCode = (int)answer.StatusCode;
            if (answer.Content.Headers.ContentType is { } contentType)
            {
                context.Response.ContentType = contentType.ToString();
            }

            await answer.Content.CopyToAsync(context.Response.Body, context.RequestAborted).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            await Error(HttpStatusCode.InternalServerError, "ERR_DIRECT_INVOKE", e.Message).ExecuteAsync(context).ConfigureAwait(false);
        }
    }

    // The CloudEvents 1.0 envelope Dapr wraps a published body in; null when a body sent as a CloudEvent is not one.
    private byte[]? Envelope(string pubsub, string topic, byte[] body, string? contentType, string? traceParent)
    {
        contentType = string.IsNullOrEmpty(contentType) ? "text/plain" : contentType;
        JsonObject envelope;
        if (contentType.StartsWith("application/cloudevents+json", StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                envelope = JsonNode.Parse(body) as JsonObject ?? throw new JsonException("not an object");
            }
            catch (JsonException)
            {
                return null;
            }
        }
        else
        {
            envelope = new JsonObject { ["datacontenttype"] = contentType };
            if (IsJson(contentType))
            {
                envelope["data"] = JsonNode.Parse(body);
            }
            else if (IsText(contentType))
            {
                envelope["data"] = Encoding.UTF8.GetString(body);
            }
            else
            {
                envelope["data_base64"] = Convert.ToBase64String(body);
            }
        }

        traceParent = string.IsNullOrEmpty(traceParent) ? $"00-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16))}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8))}-01" : traceParent;
        envelope["specversion"] ??= "1.0";
        envelope["id"] ??= Guid.NewGuid().ToString();
        envelope["source"] ??= AppId;
        envelope["type"] ??= "com.dapr.event.sent";
        envelope["time"] ??= DateTimeOffset.UtcNow.ToString("o", CultureInfo.InvariantCulture);
        envelope["topic"] = topic;
        envelope["pubsubname"] = pubsub;
        envelope["traceparent"] ??= traceParent;
        envelope["traceid"] ??= traceParent;
        envelope["tracestate"] ??= "";
        return Encoding.UTF8.GetBytes(envelope.ToJsonString());
    }

    private static bool IsJson(string contentType)
    {
        var media = contentType.Split(';')[0].Trim();
        return media.Equals("application/json", StringComparison.OrdinalIgnoreCase) || media.EndsWith("+json", StringComparison.OrdinalIgnoreCase);
    }

    private static bool IsText(string contentType) =>
        contentType.StartsWith("text/", StringComparison.OrdinalIgnoreCase)
        || contentType.StartsWith("application/xml", StringComparison.OrdinalIgnoreCase);

    // One topic's deliveries to the app: new entries first, then what has waited unacknowledged longer than
    // RedeliverAfter (claimed by this consumer, as the component's redelivery does).
    private async Task DeliverLoopAsync(string topic, Uri route)
    {
        var stopping = _stopping.Token;
        var idle = IdlePoll;
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                var entries = await _database.StreamReadGroupAsync(topic, ConsumerId, _consumer, StreamPosition.NewMessages, count: 256).ConfigureAwait(false);
                if (entries.Length == 0)
                {
                    var claimed = await _database.StreamAutoClaimAsync(topic, ConsumerId, _consumer, (long)RedeliverAfter.TotalMilliseconds, "0-0", count: 256).ConfigureAwait(false);
                    entries = claimed.ClaimedEntries;
                }

                if (entries.Length == 0)
                {
                    await Task.Delay(idle, stopping).ConfigureAwait(false);
                    idle = idle * 2 > IdlePollMax ? IdlePollMax : idle * 2;
                    continue;
                }

                idle = IdlePoll;
                await DeliverAsync(topic, route, entries, stopping).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is RedisException or TimeoutException or HttpRequestException or OperationCanceledException)
            {
                _errors.Enqueue($"{topic}: {e.Message}");
                await Task.Delay(100, stopping).ContinueWith(static _ => { }, TaskScheduler.Default).ConfigureAwait(false);
            }
        }
    }

    private async Task DeliverAsync(string topic, Uri route, StreamEntry[] entries, CancellationToken stopping)
    {
        var posts = new List<StreamEntry>(entries.Length * Math.Max(1, Copies));
        foreach (var entry in entries)
        {
            for (var copy = 0; copy < Math.Max(1, Copies); copy++)
            {
                posts.Add(entry);
            }
        }

        var window = ReorderWindow;
        if (window > 1)
        {
            for (var start = 0; start < posts.Count; start += window)
            {
                var end = Math.Min(posts.Count, start + window);
                lock (_random)
                {
                    for (var i = end - 1; i > start; i--)
                    {
                        var j = _random.Next(start, i + 1);
                        (posts[i], posts[j]) = (posts[j], posts[i]);
                    }
                }
            }
        }

        var handled = new HashSet<RedisValue>();
        foreach (var entry in posts)
        {
            var envelope = (byte[])entry["data"]!;
            if (await PostAsync(route, envelope, stopping).ConfigureAwait(false))
            {
                handled.Add(entry.Id);
            }
        }

        if (handled.Count > 0)
        {
            await _database.StreamAcknowledgeAsync(topic, ConsumerId, [.. handled]).ConfigureAwait(false);
        }
    }

    // True when the message is done with (success or drop), false when Dapr would retry it.
    private async Task<bool> PostAsync(Uri route, byte[] envelope, CancellationToken stopping)
    {
        using var content = new ByteArrayContent(envelope);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/cloudevents+json");
        using var request = new HttpRequestMessage(HttpMethod.Post, route) { Content = content };
        using (var document = JsonDocument.Parse(envelope))
        {
            if (document.RootElement.TryGetProperty("traceparent", out var traceParent) && traceParent.GetString() is { Length: > 0 } value)
            {
                request.Headers.TryAddWithoutValidation("traceparent", value);
            }
        }

        Interlocked.Increment(ref _posted);
        HttpResponseMessage answer;
        try
        {
            answer = await _http.SendAsync(request, stopping).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            _errors.Enqueue($"{route}: {e.Message}");
            Interlocked.Increment(ref _retried);
            return false;
        }

        using (answer)
        {
            if (answer.StatusCode == HttpStatusCode.NotFound)
            {
                Interlocked.Increment(ref _dropped);
                return true;
            }

            if (!answer.IsSuccessStatusCode)
            {
                Interlocked.Increment(ref _retried);
                return false;
            }

            var text = await answer.Content.ReadAsStringAsync(stopping).ConfigureAwait(false);
            var status = "SUCCESS";
            if (!string.IsNullOrWhiteSpace(text))
            {
                try
                {
                    if (JsonNode.Parse(text) is JsonObject body && body["status"] is JsonValue given && given.TryGetValue<string>(out var named) && named.Length > 0)
                    {
                        status = named.ToUpperInvariant();
                    }
                }
                catch (JsonException)
                {
                    // Dapr reads a 2xx whose body is not JSON as success.
                }
            }

            switch (status)
            {
                case "SUCCESS":
                    Interlocked.Increment(ref _succeeded);
                    return true;
                case "DROP":
                    Interlocked.Increment(ref _dropped);
                    return true;
                default:
                    // RETRY, and any unknown status (Dapr warns and retries).
                    Interlocked.Increment(ref _retried);
                    return false;
            }
        }
    }

    private static IResult Error(HttpStatusCode status, string code, string message) =>
        Results.Json(new Dictionary<string, string> { ["errorCode"] = code, ["message"] = message }, statusCode: (int)status);

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(_loops).WaitAsync(TimeSpan.FromSeconds(10)).ContinueWith(static _ => { }, TaskScheduler.Default).ConfigureAwait(false);
        if (_app is not null)
        {
            await _database.SetRemoveAsync(AppsKeyPrefix + AppId, _app.ToString()).ContinueWith(static _ => { }, TaskScheduler.Default).ConfigureAwait(false);
        }

        await _web.StopAsync().WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        await _web.DisposeAsync().ConfigureAwait(false);
        await _redis.DisposeAsync().ConfigureAwait(false);
        _http.Dispose();
        _stopping.Dispose();
    }
}

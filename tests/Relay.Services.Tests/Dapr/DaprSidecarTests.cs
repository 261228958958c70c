using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Relay.Testing;

namespace Relay.Services.Tests.Dapr;

/// <summary>
/// The sidecar stand-in itself, against a plain Kestrel app: what the Dapr bus's tests rely on it to do as daprd does
/// (CloudEvents envelopes, the subscriber's answer, redelivery, invocation) and its knobs (copies, reordering).
/// </summary>
public sealed class DaprSidecarTests(RedisBusFixture redis) : IClassFixture<RedisBusFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Publish_BinaryAndJson_AreDeliveredAsCloudEventsEnvelopes()
    {
        var topic = NewTopic();
        await using var app = await ScriptedApp.StartAsync(topic, static _ => (200, """{"status":"SUCCESS"}"""));
        await using var sidecar = await DaprSidecar.StartAsync("app-a", redis.Redis.Configuration);
        await sidecar.AttachAppAsync(app.Address);
        using var http = new HttpClient { BaseAddress = sidecar.HttpEndpoint, Timeout = Patience };

        using var binary = new ByteArrayContent([0, 1, 2, 255]);
        binary.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        using var publishBinary = new HttpRequestMessage(HttpMethod.Post, $"v1.0/publish/{DaprSidecar.DefaultPubSub}/{topic}") { Content = binary };
        publishBinary.Headers.TryAddWithoutValidation("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        Assert.Equal(HttpStatusCode.NoContent, (await http.SendAsync(publishBinary)).StatusCode);
        using var json = new StringContent("""{"a":1}""", Encoding.UTF8, "application/json");
        Assert.Equal(HttpStatusCode.NoContent, (await http.PostAsync(new Uri($"v1.0/publish/{DaprSidecar.DefaultPubSub}/{topic}", UriKind.Relative), json)).StatusCode);

        var events = await app.WaitForAsync(2);
        var first = events[0].Envelope;
        Assert.Equal("1.0", (string?)first["specversion"]);
        Assert.Equal("app-a", (string?)first["source"]);
        Assert.Equal("com.dapr.event.sent", (string?)first["type"]);
        Assert.Equal(topic, (string?)first["topic"]);
        Assert.Equal(DaprSidecar.DefaultPubSub, (string?)first["pubsubname"]);
        Assert.Equal("application/octet-stream", (string?)first["datacontenttype"]);
        Assert.Equal(new byte[] { 0, 1, 2, 255 }, Convert.FromBase64String((string)first["data_base64"]!));
        Assert.Equal("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", (string?)first["traceparent"]);
        Assert.False(string.IsNullOrEmpty((string?)first["id"]));
        Assert.Equal("application/cloudevents+json", events[0].ContentType);
        Assert.Equal(1, (int)events[1].Envelope["data"]!["a"]!);
        Assert.NotEqual((string?)first["id"], (string?)events[1].Envelope["id"]);
    }

    [Fact]
    public async Task Publish_UnknownComponent_IsAnswered404()
    {
        await using var sidecar = await DaprSidecar.StartAsync("app-a", redis.Redis.Configuration);
        using var http = new HttpClient { BaseAddress = sidecar.HttpEndpoint, Timeout = Patience };
        using var body = new StringContent("x");
        var answer = await http.PostAsync(new Uri("v1.0/publish/nope/t", UriKind.Relative), body);
        Assert.Equal(HttpStatusCode.NotFound, answer.StatusCode);
        Assert.Contains("ERR_PUBSUB_NOT_FOUND", await answer.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(200, """{"status":"RETRY"}""")]
    [InlineData(500, "")]
    [InlineData(503, """{"status":"SUCCESS"}""")]
    public async Task Answer_RetryOrFailure_IsDeliveredAgain(int status, string body)
    {
        var topic = NewTopic();
        var calls = 0;
        await using var app = await ScriptedApp.StartAsync(topic, _ => Interlocked.Increment(ref calls) <= 2 ? (status, body) : (200, ""));
        await using var sidecar = await DaprSidecar.StartAsync("app-a", redis.Redis.Configuration);
        sidecar.RedeliverAfter = TimeSpan.FromMilliseconds(100);
        await sidecar.AttachAppAsync(app.Address);
        await PublishTextAsync(sidecar, topic, "once");

        // Two refusals, then the success: three posts of the same event, then none (acknowledged).
        var events = await app.WaitForAsync(3);
        Assert.All(events, e => Assert.Equal((string?)events[0].Envelope["id"], (string?)e.Envelope["id"]));
        await Task.Delay(TimeSpan.FromMilliseconds(800));
        Assert.Equal(3, app.Received.Count);
        Assert.Equal(2, sidecar.Retried);
        Assert.Equal(1, sidecar.Succeeded);
    }

    [Theory]
    [InlineData(200, """{"status":"DROP"}""")]
    [InlineData(404, "")]
    public async Task Answer_DropOr404_IsNotDeliveredAgain(int status, string body)
    {
        var topic = NewTopic();
        await using var app = await ScriptedApp.StartAsync(topic, _ => (status, body));
        await using var sidecar = await DaprSidecar.StartAsync("app-a", redis.Redis.Configuration);
        sidecar.RedeliverAfter = TimeSpan.FromMilliseconds(100);
        await sidecar.AttachAppAsync(app.Address);
        await PublishTextAsync(sidecar, topic, "dropped");

        await app.WaitForAsync(1);
        await Task.Delay(TimeSpan.FromMilliseconds(800));
        Assert.Single(app.Received);
        Assert.Equal(1, sidecar.Dropped);
        Assert.Equal(0, sidecar.Retried);
    }

    [Fact]
    public async Task Knobs_CopiesAndReorderWindow_DeliverEveryMessageTwiceOutOfOrder()
    {
        const int Count = 400;
        var topic = NewTopic();
        await using var app = await ScriptedApp.StartAsync(topic, static _ => (200, ""));
        await using var sidecar = await DaprSidecar.StartAsync("app-a", redis.Redis.Configuration);
        sidecar.Copies = 2;
        sidecar.ReorderWindow = 16;
        await sidecar.AttachAppAsync(app.Address);
        for (var i = 0; i < Count; i++)
        {
            await PublishTextAsync(sidecar, topic, i.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        var events = await app.WaitForAsync(2 * Count);
        var numbers = events.Select(static e => int.Parse((string)e.Envelope["data"]!, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.All(numbers.GroupBy(static n => n), static g => Assert.Equal(2, g.Count()));
        Assert.Equal(Count, numbers.Distinct().Count());
        Assert.NotEqual(numbers.Order().ToList(), numbers);
    }

    [Fact]
    public async Task Topic_TwoAppIds_EachGetsEveryMessage_TwoInstancesOfOneShareThem()
    {
        const int Count = 200;
        var topic = NewTopic();
        await using var one = await ScriptedApp.StartAsync(topic, static _ => (200, ""));
        await using var two = await ScriptedApp.StartAsync(topic, static _ => (200, ""));
        await using var other = await ScriptedApp.StartAsync(topic, static _ => (200, ""));
        await using var sidecarOne = await DaprSidecar.StartAsync("shared", redis.Redis.Configuration);
        await using var sidecarTwo = await DaprSidecar.StartAsync("shared", redis.Redis.Configuration);
        await using var sidecarOther = await DaprSidecar.StartAsync("other", redis.Redis.Configuration);
        await sidecarOne.AttachAppAsync(one.Address);
        await sidecarTwo.AttachAppAsync(two.Address);
        await sidecarOther.AttachAppAsync(other.Address);
        for (var i = 0; i < Count; i++)
        {
            await PublishTextAsync(sidecarOther, topic, i.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        await other.WaitForAsync(Count);
        using var deadline = new CancellationTokenSource(Patience);
        while (one.Received.Count + two.Received.Count < Count)
        {
            await Task.Delay(50, deadline.Token);
        }

        await Task.Delay(300);
        Assert.Equal(Count, one.Received.Count + two.Received.Count);
        Assert.Equal(Count, one.Received.Concat(two.Received).Select(static e => (string?)e.Envelope["id"]).Distinct().Count());
    }

    [Fact]
    public async Task Invoke_AttachedApp_ForwardsRequestAndAnswer()
    {
        await using var app = await ScriptedApp.StartAsync(NewTopic(), static _ => (200, ""));
        await using var sidecar = await DaprSidecar.StartAsync("callee", redis.Redis.Configuration);
        await sidecar.AttachAppAsync(app.Address);
        await using var caller = await DaprSidecar.StartAsync("caller", redis.Redis.Configuration);
        using var http = new HttpClient { BaseAddress = caller.HttpEndpoint, Timeout = Patience };

        using var body = new ByteArrayContent([1, 2, 3]);
        body.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        var answer = await http.PostAsync(new Uri("v1.0/invoke/callee/method/echo", UriKind.Relative), body);
        Assert.Equal(HttpStatusCode.Accepted, answer.StatusCode);
        Assert.Equal(new byte[] { 3, 2, 1 }, await answer.Content.ReadAsByteArrayAsync());

        var missing = await http.PostAsync(new Uri("v1.0/invoke/nobody/method/echo", UriKind.Relative), new ByteArrayContent([1]));
        Assert.Equal(HttpStatusCode.InternalServerError, missing.StatusCode);
        Assert.Contains("ERR_DIRECT_INVOKE", await missing.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    private static string NewTopic() => "t-" + Guid.NewGuid().ToString("N")[..12];

    private static async Task PublishTextAsync(DaprSidecar sidecar, string topic, string text)
    {
        using var http = new HttpClient { BaseAddress = sidecar.HttpEndpoint, Timeout = Patience };
        using var content = new StringContent(text, Encoding.UTF8, "text/plain");
        var answer = await http.PostAsync(new Uri($"v1.0/publish/{DaprSidecar.DefaultPubSub}/{topic}", UriKind.Relative), content);
        Assert.Equal(HttpStatusCode.NoContent, answer.StatusCode);
    }

    /// <summary>An app with one subscription whose answers a script decides, recording every event posted to it.</summary>
    private sealed class ScriptedApp : IAsyncDisposable
    {
        private readonly string _topic;
        private readonly Func<JsonObject, (int Status, string Body)> _answer;
        private LoopbackServer? _server;

        private ScriptedApp(string topic, Func<JsonObject, (int Status, string Body)> answer)
        {
            _topic = topic;
            _answer = answer;
        }

        public Uri Address => _server!.Url;

        public ConcurrentQueue<(JsonObject Envelope, string? ContentType)> Received { get; } = new();

        public static async Task<ScriptedApp> StartAsync(string topic, Func<JsonObject, (int Status, string Body)> answer)
        {
            var app = new ScriptedApp(topic, answer);
            app._server = await LoopbackServer.StartAsync(app.HandleAsync);
            return app;
        }

        public async Task<List<(JsonObject Envelope, string? ContentType)>> WaitForAsync(int count)
        {
            using var deadline = new CancellationTokenSource(Patience);
            while (Received.Count < count)
            {
                await Task.Delay(20, deadline.Token);
            }

            return [.. Received];
        }

        public ValueTask DisposeAsync() => _server?.DisposeAsync() ?? ValueTask.CompletedTask;

        // What daprd calls on an app: its subscription list, the topic's route, and the method service invocation reaches.
        private async Task HandleAsync(HttpContext context)
        {
            var (method, path) = (context.Request.Method, context.Request.Path.Value);
            if (HttpMethods.IsGet(method) && path == "/dapr/subscribe")
            {
                await WriteAsync(context, 200, "application/json", Encoding.UTF8.GetBytes(
                    $$"""[{"pubsubname":"{{DaprSidecar.DefaultPubSub}}","topic":"{{_topic}}","route":"/events/{{_topic}}"}]"""));
            }
            else if (HttpMethods.IsPost(method) && path?.StartsWith("/events/", StringComparison.Ordinal) == true)
            {
                var envelope = (JsonObject)(await JsonNode.ParseAsync(context.Request.Body))!;
                Received.Enqueue((envelope, context.Request.ContentType));
                var (status, body) = _answer(envelope);
                await WriteAsync(context, status, "application/json", Encoding.UTF8.GetBytes(body));
            }
            else if (HttpMethods.IsPost(method) && path == "/echo")
            {
                using var body = new MemoryStream();
                await context.Request.Body.CopyToAsync(body);
                var bytes = body.ToArray();
                Array.Reverse(bytes);
                await WriteAsync(context, 202, "application/octet-stream", bytes);
            }
            else
            {
                context.Response.StatusCode = StatusCodes.Status404NotFound;
            }
        }

        private static async Task WriteAsync(HttpContext context, int status, string contentType, byte[] body)
        {
            context.Response.StatusCode = status;
            context.Response.ContentType = contentType;
            await context.Response.Body.WriteAsync(body);
        }
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Confluent.Kafka;
using Relay.Testing;
using Testcontainers.Kafka;
using Testcontainers.Redis;

namespace Relay.Deploy.Tests;

/// <summary>
/// Runs only where the CI workflow's integration job sets <see cref="Variable"/>=1: it needs Docker (Testcontainers),
/// the dapr CLI after <c>dapr init --slim</c> and the services published to <c>artifacts/services/</c>, none of which this
/// repository's own test run has.
/// </summary>
public sealed class DaprIntegrationFactAttribute : FactAttribute
{
    public const string Variable = "RELAY_DAPR_INTEGRATION";

    public DaprIntegrationFactAttribute()
    {
        if (Environment.GetEnvironmentVariable(Variable) != "1")
        {
            Skip = $"needs Docker, the dapr CLI (dapr init --slim) and the services published to artifacts/services/: the CI workflow's integration job sets {Variable}=1";
        }
    }
}

/// <summary>
/// The CI workflow's integration job: a real Redis and a real Kafka from Testcontainers, each cluster service published
/// and started under a real <c>daprd</c> sidecar (<c>dapr run</c>) on the Dapr bus with the pub/sub component of
/// infra/dapr/components, and one message from an HTTP publish to a WebSocket subscriber, to history and to the Kafka
/// firehose.
/// </summary>
public sealed class ServicesUnderDaprTests
{
    /// <summary>The folder under the repository root the workflow publishes each service to (artifacts/services/Routing, …; git ignores artifacts/).</summary>
    public const string PublishFolder = "artifacts/services";

    /// <summary>Where each service's output goes (artifacts/logs/relay-routing.log, …), which the workflow prints.</summary>
    public const string LogFolder = "artifacts/logs";

    private const string Key = "demo.root:demo-secret-for-development-only"; // services/Relay.Auth/appsettings.Development.json
    private const string FirehoseTopic = "relay-firehose";
    private const string NodeId = "relay-ingress-ci";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    /// <summary>
    /// The services the job runs, by app id (the Deployments' dapr.io/app-id), published folder (services/Relay.{Folder})
    /// and port; auth stays on the Redis bus (it serves keys and tokens, no bus hop), the others carry every hop over Dapr.
    /// </summary>
    internal static readonly (string AppId, string Folder, int Port, string Bus)[] Services =
    [
        ("relay-auth", "Auth", 8081, "redis"),
        ("relay-routing", "Routing", 8083, "dapr"),
        ("relay-fanout", "FanOut", 8084, "dapr"),
        ("relay-ingress", "Ingress", 8080, "dapr"),
    ];

    [DaprIntegrationFact]
    public async Task Services_UnderDaprSidecars_OverRedisAndKafkaFromTestcontainers_CarryAMessageEndToEnd()
    {
        using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(8));
        await using var redis = new RedisBuilder("redis:7.4").Build();
        await using var kafka = new KafkaBuilder("confluentinc/cp-kafka:7.5.12").Build();
        await Task.WhenAll(redis.StartAsync(cancel.Token), kafka.StartAsync(cancel.Token)).WaitAsync(TimeSpan.FromMinutes(5));
        var redisAddress = redis.GetConnectionString();
        var kafkaAddress = HostAndPort(kafka.GetBootstrapAddress());

        var components = Directory.CreateTempSubdirectory("relay-dapr-components-");
        var logs = Directory.CreateDirectory(Repo.PathOf(LogFolder));
        var processes = new List<Process>();
        try
        {
            File.WriteAllText(Path.Combine(components.FullName, "pubsub-redis.yaml"), PubSubComponent(redisAddress));
            var daprPort = 3600;
            foreach (var (appId, folder, port, bus) in Services)
            {
                var dll = Repo.PathOf(PublishFolder, folder, $"Relay.{folder}.dll");
                Assert.True(File.Exists(dll), $"{Repo.Relative(dll)} is missing: the workflow publishes services/Relay.{folder} to {PublishFolder}/{folder} before this test");
                var environment = new Dictionary<string, string>
                {
                    ["ASPNETCORE_HTTP_PORTS"] = port.ToString(CultureInfo.InvariantCulture),
                    ["Relay__Bus"] = bus,
                    ["Relay__Redis__Configuration"] = redisAddress,
                    ["Relay__Kafka__BootstrapServers"] = kafkaAddress,
                };
                switch (folder)
                {
                    case "Auth":
                        environment["ASPNETCORE_ENVIRONMENT"] = "Development";
                        break;
                    case "FanOut":
                        environment["Relay__Kafka__FirehoseTopic"] = FirehoseTopic;
                        break;
                    case "Ingress":
                        environment["Relay__Auth__KeySource"] = "redis";
                        environment["Relay__Ingress__AuthUrl"] = "http://127.0.0.1:8081/";
                        environment["Relay__Ingress__NodeId"] = NodeId;
                        break;
                }

                processes.Add(StartUnderDapr(appId, port, daprPort, dll, components.FullName, environment, Path.Combine(logs.FullName, appId + ".log")));
                daprPort += 10;
            }

            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            foreach (var (appId, _, port, _) in Services)
            {
                await WaitReadyAsync(http, appId, port, Path.Combine(logs.FullName, appId + ".log"), cancel.Token);
            }

            // A WebSocket subscriber on the ingress node, then an HTTP publish: ingress -> routing (invoked through the
            // sidecars) -> fan-out (relay-sequenced) -> the node (relay-node-relay-ingress-ci).
            await using var subscriber = await TestSocket.ConnectAsync(new Uri($"ws://127.0.0.1:8080/v1/realtime?key={Key}")).WaitAsync(Timeout);
            var subscribed = await subscriber.RequestAsync(new Dictionary<string, object?> { ["type"] = "subscribe", ["channel"] = "smoke" }).WaitAsync(Timeout);
            Assert.True(subscribed.GetProperty("type").GetString() != "error", subscribed.GetRawText());

            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(Key)));
            using var published = await http.PostAsync(
                new Uri("http://127.0.0.1:8080/v1/channels/smoke/messages"),
                new StringContent("""{"name":"smoke","data":"hello from ci"}""", Encoding.UTF8, "application/json"),
                cancel.Token).WaitAsync(Timeout);
            Assert.True(published.IsSuccessStatusCode, $"publish answered {(int)published.StatusCode}: {await published.Content.ReadAsStringAsync(cancel.Token)}");

            var message = await subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(30));
            Assert.Equal("hello from ci", message.GetProperty("data").GetString());
            Assert.Equal(1, message.GetProperty("seq").GetInt64());

            var history = await http.GetStringAsync(new Uri("http://127.0.0.1:8080/v1/channels/smoke/messages"), cancel.Token).WaitAsync(Timeout);
            Assert.Contains("hello from ci", history, StringComparison.Ordinal);

            Assert.True(await FirehoseHasAsync(kafkaAddress, "hello from ci", TimeSpan.FromSeconds(60)), $"the firehose topic {FirehoseTopic} did not get the message within 60 s");
        }
        finally
        {
            foreach (var process in processes)
            {
                try
                {
                    process.Kill(entireProcessTree: true);
                    await process.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(15));
                }
                catch (InvalidOperationException)
                {
                    // already gone
                }
                catch (TimeoutException)
                {
                    // left to the runner's clean-up
                }

                process.Dispose();
            }

            components.Delete(recursive: true);
        }
    }

    /// <summary>
    /// infra/dapr/components/pubsub-redis.yaml, pointed at <paramref name="redisAddress"/> without the AUTH token (the
    /// container has none). It fails when the component no longer has the lines it changes.
    /// </summary>
    internal static string PubSubComponent(string redisAddress)
    {
        var text = File.ReadAllText(Repo.PathOf("infra", "dapr", "components", "pubsub-redis.yaml"));
        const string Host = "    - name: redisHost\n      value: redis:6379\n";
        const string Password = "    - name: redisPassword\n      secretKeyRef:\n        name: relay-redis\n        key: auth-token\n";
        Assert.Contains(Host, text, StringComparison.Ordinal);
        Assert.Contains(Password, text, StringComparison.Ordinal);
        return text.Replace(Host, $"    - name: redisHost\n      value: \"{redisAddress}\"\n", StringComparison.Ordinal).Replace(Password, "", StringComparison.Ordinal);
    }

    /// <summary>The arguments of <c>dapr run</c> for one service (sidecar ports from <paramref name="daprPort"/> up, so four never collide).</summary>
    internal static List<string> DaprRunArguments(string appId, int appPort, int daprPort, string dll, string resources) =>
    [
        "run",
        "--app-id", appId,
        "--app-port", appPort.ToString(CultureInfo.InvariantCulture),
        "--dapr-http-port", daprPort.ToString(CultureInfo.InvariantCulture),
        "--dapr-grpc-port", (daprPort + 1).ToString(CultureInfo.InvariantCulture),
        "--metrics-port", (daprPort + 2).ToString(CultureInfo.InvariantCulture),
        "--resources-path", resources,
        "--enable-app-health-check",
        "--app-health-check-path", "/healthz",
        "--", "dotnet", dll,
    ];

    private static Process StartUnderDapr(string appId, int appPort, int daprPort, string dll, string resources, Dictionary<string, string> environment, string log)
    {
        // bash sends dapr's output to the log file (the workflow prints the logs), exec keeps one process tree to kill.
        var command = "exec dapr " + string.Join(' ', DaprRunArguments(appId, appPort, daprPort, dll, resources).Select(static a => "'" + a.Replace("'", "'\\''", StringComparison.Ordinal) + "'")) + $" > '{log}' 2>&1";
        var start = new ProcessStartInfo("bash") { WorkingDirectory = Repo.Root, UseShellExecute = false };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(command);
        foreach (var (name, value) in environment)
        {
            start.Environment[name] = value;
        }

        return Process.Start(start) ?? throw new InvalidOperationException($"dapr run for {appId} did not start");
    }

    private static async Task WaitReadyAsync(HttpClient http, string appId, int port, string log, CancellationToken cancel)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < Timeout)
        {
            try
            {
                using var answer = await http.GetAsync(new Uri($"http://127.0.0.1:{port}/readyz"), cancel).WaitAsync(TimeSpan.FromSeconds(10), cancel);
                if (answer.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or TimeoutException)
            {
                // not listening yet
            }

            await Task.Delay(TimeSpan.FromSeconds(1), cancel);
        }

        var tail = File.Exists(log) ? string.Join('\n', File.ReadLines(log).TakeLast(40)) : "(no log)";
        Assert.Fail($"{appId} was not ready on :{port}/readyz within {Timeout.TotalSeconds:0} s; its log ends:\n{tail}");
    }

    private static async Task<bool> FirehoseHasAsync(string bootstrap, string text, TimeSpan within)
    {
        using var consumer = new ConsumerBuilder<string, byte[]>(new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = "relay-ci-" + Guid.NewGuid().ToString("N"),
            AutoOffsetReset = AutoOffsetReset.Earliest,
            EnableAutoCommit = false,
        }).Build();
        consumer.Subscribe(FirehoseTopic);
        var deadline = Stopwatch.StartNew();
        try
        {
            while (deadline.Elapsed < within)
            {
                ConsumeResult<string, byte[]>? record;
                try
                {
                    record = await Task.Run(() => consumer.Consume(TimeSpan.FromSeconds(1))).WaitAsync(TimeSpan.FromSeconds(10));
                }
                catch (ConsumeException e) when (e.Error.Code == ErrorCode.UnknownTopicOrPart)
                {
                    continue; // the firehose has not made the topic yet
                }

                if (record?.Message?.Value is { } value && Encoding.UTF8.GetString(value).Contains(text, StringComparison.Ordinal))
                {
                    return true;
                }
            }

            return false;
        }
        finally
        {
            consumer.Close();
        }
    }

    /// <summary>host:port of a bootstrap address Testcontainers may give as a URI (plaintext://127.0.0.1:32768/).</summary>
    internal static string HostAndPort(string address) =>
        address.Contains("://", StringComparison.Ordinal) && Uri.TryCreate(address, UriKind.Absolute, out var uri)
            ? $"{uri.Host}:{uri.Port.ToString(CultureInfo.InvariantCulture)}"
            : address.TrimEnd('/');
}

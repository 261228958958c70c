using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Amazon.S3.Model;
using MQTTnet;
using MQTTnet.Protocol;
using Relay.Functions.Archive;
using Relay.Testing;

namespace Relay.Functions.Tests;

/// <summary>
/// The Relay.Functions app on its own, started as the Lambda Web Adapter starts it (a process with
/// <c>ASPNETCORE_URLS</c> and settings from the environment): it serves <c>/healthz</c>, and as an after-publish
/// hook target its archive function writes what a Relay acknowledged to S3 (s3rver); the adapter's pass-through path
/// for direct invocations (<c>/events</c>) takes the same body.
/// </summary>
public sealed class ArchiveFunctionAppTests : IAsyncLifetime
{
    private const string Bucket = "relay-fn-archive";
    private S3rverServer _s3 = null!;
    private Process _app = null!;
    private Uri _appUrl = null!;
    private readonly StringBuilder _log = new();

    public async Task InitializeAsync()
    {
        _s3 = await S3rverServer.StartAsync(Bucket);
        var dll = Path.Combine(S3rverServer.RepositoryRoot(), "services", "Relay.Functions", "bin", "Release", "net10.0", "Relay.Functions.dll");
        Assert.True(File.Exists(dll), $"{dll} is not built: build the solution in Release first (./test.sh does)");
        var port = S3rverServer.FreePort();
        _appUrl = new Uri($"http://127.0.0.1:{port}/");
        var start = new ProcessStartInfo("dotnet", [dll])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Path.GetDirectoryName(dll)!,
        };
        start.Environment["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}";
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        start.Environment["Relay__Functions__Archive__Bucket"] = Bucket;
        start.Environment["Relay__Functions__Archive__ServiceUrl"] = _s3.ServiceUrl;
        start.Environment["Relay__Functions__Archive__ForcePathStyle"] = "true";
        start.Environment["Relay__Functions__Archive__Prefix"] = "fn/";
        start.Environment["AWS_ACCESS_KEY_ID"] = S3rverServer.AccessKeyId;
        start.Environment["AWS_SECRET_ACCESS_KEY"] = S3rverServer.SecretAccessKey;
        _app = Process.Start(start) ?? throw new InvalidOperationException("dotnet did not start");
        _app.OutputDataReceived += (_, e) => Append(e.Data);
        _app.ErrorDataReceived += (_, e) => Append(e.Data);
        _app.BeginOutputReadLine();
        _app.BeginErrorReadLine();

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        for (var i = 0; i < 300; i++)
        {
            Assert.False(_app.HasExited, "Relay.Functions exited while starting:\n" + Log());
            try
            {
                using var response = await http.GetAsync(new Uri(_appUrl, "healthz"));
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                // Not listening yet.
            }

            await Task.Delay(200);
        }

        throw new TimeoutException("Relay.Functions did not answer /healthz within 60 s:\n" + Log());
    }

    public async Task DisposeAsync()
    {
        if (!_app.HasExited)
        {
            _app.Kill(entireProcessTree: true);
            using var exited = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await _app.WaitForExitAsync(exited.Token);
        }

        _app.Dispose();
        await _s3.DisposeAsync();
    }

    [Fact]
    public async Task ArchiveFunction_AsAfterPublishTarget_EveryAcknowledgedPublishLandsInTheBucket()
    {
        const int publishes = 40;
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Functions:Namespaces:lam:AfterPublish:Target"] = new Uri(_appUrl, ArchiveFunction.Path.TrimStart('/')).ToString(),
            ["Relay:Functions:Namespaces:lam:AfterPublish:Timeout"] = "00:00:10",
            ["Relay:Functions:FirstRetryDelay"] = "00:00:00.100",
        });
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key, "alice"));
        for (var i = 0; i < publishes; i++)
        {
            Assert.Equal(i + 1L, (await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "lam:room", ["data"] = $"m{i}" })).GetProperty("seq").GetInt64());
        }

        using var s3 = _s3.Client();
        var lines = new List<JsonElement>();
        for (var attempt = 0; attempt < 150 && lines.Count < publishes; attempt++)
        {
            await Task.Delay(200);
            lines.Clear();
            var listing = await s3.ListObjectsV2Async(new ListObjectsV2Request { BucketName = Bucket, Prefix = ArchiveKeys.ChannelPrefix("fn/", RelayServer.AppId, "lam:room") });
            foreach (var key in (listing.S3Objects ?? []).Select(static o => o.Key).Order(StringComparer.Ordinal))
            {
                using var body = await s3.GetObjectAsync(Bucket, key);
                using var reader = new StreamReader(body.ResponseStream);
                lines.AddRange((await reader.ReadToEndAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(static l => JsonDocument.Parse(l).RootElement.Clone()));
            }
        }

        Assert.Equal(Enumerable.Range(1, publishes).Select(static s => (long)s), lines.Select(static l => l.GetProperty("seq").GetInt64()));
        Assert.Equal(Enumerable.Range(0, publishes).Select(static i => $"m{i}"), lines.Select(static l => l.GetProperty("data").GetString()));
        Assert.All(lines, static l => Assert.Equal("alice", l.GetProperty("clientId").GetString()));
    }

    [Fact]
    public async Task ArchiveFunction_MqttTopicsWithEmptyLevels_ArchivedLikeAnyChannel()
    {
        // MQTT topics may have empty levels, and Relay keeps them as channels (ChannelName.IsValidTopicName): the archive
        // takes every channel Relay can store. The publisher is MQTTnet, over the node's MQTT port.
        string[] channels = ["lam://lead", "lam:a//b", "lam:trail/"];
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Functions:Namespaces:lam:AfterPublish:Target"] = new Uri(_appUrl, ArchiveFunction.Path.TrimStart('/')).ToString(),
            ["Relay:Functions:Namespaces:lam:AfterPublish:Timeout"] = "00:00:10",
            ["Relay:Functions:FirstRetryDelay"] = "00:00:00.100",
        });
        using var mqtt = new MqttClientFactory().CreateMqttClient();
        var colon = RelayServer.Key.IndexOf(':', StringComparison.Ordinal);
        await mqtt.ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", server.MqttPort!.Value).WithClientId("archiver-" + Guid.NewGuid().ToString("N")[..8])
            .WithCredentials(RelayServer.Key[..colon], RelayServer.Key[(colon + 1)..]).Build()).WaitAsync(TimeSpan.FromSeconds(30));
        foreach (var channel in channels)
        {
            var published = await mqtt.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(channel).WithPayload(JsonSerializer.Serialize(new { on = channel }))
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(TimeSpan.FromSeconds(30));
            Assert.True(published.IsSuccess, $"{channel}: {published.ReasonCode}");
        }

        using var s3 = _s3.Client();
        foreach (var channel in channels)
        {
            var lines = new List<JsonElement>();
            for (var attempt = 0; attempt < 150 && lines.Count == 0; attempt++)
            {
                var listing = await s3.ListObjectsV2Async(new ListObjectsV2Request { BucketName = Bucket, Prefix = ArchiveKeys.ChannelPrefix("fn/", RelayServer.AppId, channel) });
                foreach (var key in (listing.S3Objects ?? []).Select(static o => o.Key))
                {
                    using var body = await s3.GetObjectAsync(Bucket, key);
                    using var reader = new StreamReader(body.ResponseStream);
                    lines.AddRange((await reader.ReadToEndAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(static l => JsonDocument.Parse(l).RootElement.Clone()));
                }

                if (lines.Count == 0)
                {
                    await Task.Delay(200);
                }
            }

            var line = Assert.Single(lines);
            Assert.Equal(1, line.GetProperty("seq").GetInt64());
            Assert.Equal(channel, line.GetProperty("data").GetProperty("on").GetString());
        }
    }

    [Fact]
    public async Task ArchiveFunction_LambdaEventPath_WritesTheObjectAndRefusesGarbage()
    {
        using var http = new HttpClient { BaseAddress = _appUrl, Timeout = TimeSpan.FromSeconds(30) };
        const string afterPublish = """
            {"type":"afterPublish","app":"test","channel":"ev:one","epoch":"e1","clientId":null,"timestamp":1795300000000,
             "messages":[{"seq":7,"id":"k7","name":"n","data":{"x":1}},{"seq":8,"data":"AAEC","encoding":"base64"}]}
            """;
        using var written = await http.PostAsync(new Uri("events", UriKind.Relative), new StringContent(afterPublish, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, written.StatusCode);
        var key = ArchiveKeys.For("fn/", "test", "ev:one", "e1", 7, 8);
        Assert.Equal(key, JsonDocument.Parse(await written.Content.ReadAsStringAsync()).RootElement.GetProperty("key").GetString());

        using var s3 = _s3.Client();
        using var body = await s3.GetObjectAsync(Bucket, key);
        using var reader = new StreamReader(body.ResponseStream);
        var lines = (await reader.ReadToEndAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("""{"seq":7,"epoch":"e1","id":"k7","name":"n","data":{"x":1},"timestamp":1795300000000}""", lines[0]);
        Assert.Equal("""{"seq":8,"epoch":"e1","data":"AAEC","encoding":"base64","timestamp":1795300000000}""", lines[1]);

        using var garbage = await http.PostAsync(new Uri("events", UriKind.Relative), new StringContent("{\"type\":\"something\"}", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, garbage.StatusCode);
        Assert.Equal(40000, JsonDocument.Parse(await garbage.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetInt32());
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_log)
            {
                _log.AppendLine(line);
            }
        }
    }

    private string Log()
    {
        lock (_log)
        {
            return _log.ToString();
        }
    }
}

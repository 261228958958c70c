using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Amazon.S3;
using Amazon.S3.Model;
using Relay.Functions.Archive;
using Relay.Testing;

namespace Relay.Functions.Tests;

/// <summary>The S3 history archive against a real S3-compatible server (npm <c>s3rver</c>, which checks SigV4 too).</summary>
public sealed class HistoryArchiveTests : IAsyncLifetime
{
    private const string Bucket = "relay-archive";
    private S3rverServer _s3 = null!;
    private AmazonS3Client _client = null!;

    public async Task InitializeAsync()
    {
        _s3 = await S3rverServer.StartAsync(Bucket);
        _client = _s3.Client();
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _s3.DisposeAsync();
    }

    [Fact]
    public async Task Archive_PublishedAtRate_EveryMessageInTheBucketOnceInSeqOrder()
    {
        const int perChannel = 600;
        string[] channels = ["arc:one", "arc:two", "arc:room/with/levels", "other:skipped"];
        await using var server = await RelayServer.StartAsync(Settings("00:00:00.200"));
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key, "alice"));

        // Presence is no part of history: nothing of it reaches the archive.
        Assert.Equal("ok", (await publisher.RequestAsync(new() { ["type"] = "presence", ["channel"] = "arc:one", ["action"] = "enter" })).GetProperty("type").GetString());
        for (var i = 0; i < perChannel; i++)
        {
            foreach (var channel in channels)
            {
                await publisher.SendAsync(new Dictionary<string, object?> { ["type"] = "publish", ["channel"] = channel, ["data"] = $"m{i}", ["ref"] = i });
            }
        }

        for (var i = 0; i < perChannel * channels.Length; i++)
        {
            Assert.Equal("ok", (await publisher.ReceiveMatchingAsync(static e => e.GetProperty("type").GetString() is "ok" or "error", TimeSpan.FromSeconds(30))).GetProperty("type").GetString());
        }

        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        using var batch = await http.PostAsJsonAsync("v1/channels/arc:one/messages", Enumerable.Range(perChannel, 50).Select(static i => new { name = "bulk", data = $"m{i}" }).ToArray());
        Assert.True(batch.IsSuccessStatusCode);

        var expected = new Dictionary<string, int> { ["arc:one"] = perChannel + 50, ["arc:two"] = perChannel, ["arc:room/with/levels"] = perChannel };
        foreach (var (channel, count) in expected)
        {
            var objects = await ReadChannelAsync(channel, count);
            var lines = objects.SelectMany(static o => o.Lines).ToList();
            Assert.Equal(Enumerable.Range(1, count).Select(static s => (long)s), lines.Select(static l => l.GetProperty("seq").GetInt64()));
            Assert.Equal(Enumerable.Range(0, count).Select(static i => $"m{i}"), lines.Select(static l => l.GetProperty("data").GetString()));
            Assert.All(lines.Take(perChannel), static l => Assert.Equal("alice", l.GetProperty("clientId").GetString()));

            // Each object is named after its channel, epoch and first and last seq.
            var epoch = lines[0].GetProperty("epoch").GetString()!;
            foreach (var (key, objectLines) in objects)
            {
                Assert.Equal(ArchiveKeys.For("relay/", RelayServer.AppId, channel, epoch, objectLines[0].GetProperty("seq").GetInt64(), objectLines[^1].GetProperty("seq").GetInt64()), key);
            }
        }

        var levels = (await ReadChannelAsync("arc:room/with/levels", perChannel))[0].Key;
        Assert.Matches("^relay/test/arc%3Aroom%2Fwith%2Flevels/[^/]+/00000000000000000001-[0-9]{20}\\.jsonl$", levels);

        Assert.Empty(await KeysAsync(ArchiveKeys.ChannelPrefix("relay/", RelayServer.AppId, "other:skipped")));
    }

    [Fact]
    public async Task Archive_HostStops_WritesWhatItHeld()
    {
        await using (var server = await RelayServer.StartAsync(Settings("00:10:00")))
        {
            await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
            for (var i = 0; i < 30; i++)
            {
                Assert.Equal("ok", (await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "arc:held", ["data"] = $"m{i}" })).GetProperty("type").GetString());
            }

            // Held for ten minutes, so nothing yet.
            await Task.Delay(500);
            Assert.Empty(await KeysAsync(ArchiveKeys.ChannelPrefix("relay/", RelayServer.AppId, "arc:held")));
        }

        var lines = (await ReadChannelAsync("arc:held", 30)).SelectMany(static o => o.Lines);
        Assert.Equal(Enumerable.Range(1, 30).Select(static s => (long)s), lines.Select(static l => l.GetProperty("seq").GetInt64()));
    }

    [Fact]
    public async Task Archive_S3AwayForAWhile_HeldMessagesWrittenOnceItIsBackInOrder()
    {
        const int messages = 300;
        await using var server = await RelayServer.StartAsync(Settings("00:00:00.100"));
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        _s3.Stop();
        for (var i = 0; i < messages; i++)
        {
            Assert.Equal("ok", (await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "arc:outage", ["data"] = $"m{i}" })).GetProperty("type").GetString());
        }

        // The writes fail (counted) while S3 is away; the messages are held.
        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
        var failures = 0L;
        for (var i = 0; i < 100 && failures == 0; i++)
        {
            await Task.Delay(100);
            var metrics = await http.GetStringAsync(new Uri("metrics", UriKind.Relative));
            failures = (long)(PrometheusText.Value(metrics, "relay_functions_archive_failures_total") ?? 0);
        }

        Assert.True(failures > 0, "no archive write failed while S3 was away");
        await _s3.StartAgainAsync();

        var lines = (await ReadChannelAsync("arc:outage", messages)).SelectMany(static o => o.Lines);
        Assert.Equal(Enumerable.Range(1, messages).Select(static s => (long)s), lines.Select(static l => l.GetProperty("seq").GetInt64()));
    }

    private Dictionary<string, string?> Settings(string flushInterval) => new()
    {
        ["Relay:Functions:Archive:Bucket"] = Bucket,
        ["Relay:Functions:Archive:ServiceUrl"] = _s3.ServiceUrl,
        ["Relay:Functions:Archive:ForcePathStyle"] = "true",
        ["Relay:Functions:Archive:AccessKeyId"] = S3rverServer.AccessKeyId,
        ["Relay:Functions:Archive:SecretAccessKey"] = S3rverServer.SecretAccessKey,
        ["Relay:Functions:Archive:Namespaces:0"] = "arc",
        ["Relay:Functions:Archive:FlushInterval"] = flushInterval,
        ["Relay:Functions:Archive:MaxMessagesPerObject"] = "250",
        ["Relay:Ingress:PublishRatePerSecond"] = "1000000",
        ["Relay:Ingress:PublishBurst"] = "1000000",
        ["Relay:Namespaces:Defaults:HistorySize"] = "1000",
    };

    /// <summary>The channel's objects in key order and their lines, once they hold <paramref name="count"/> messages (30 s at most).</summary>
    private async Task<List<(string Key, List<JsonElement> Lines)>> ReadChannelAsync(string channel, int count)
    {
        var prefix = ArchiveKeys.ChannelPrefix("relay/", RelayServer.AppId, channel);
        for (var attempt = 0; attempt < 150; attempt++)
        {
            var objects = new List<(string Key, List<JsonElement> Lines)>();
            foreach (var key in await KeysAsync(prefix))
            {
                using var response = await _client.GetObjectAsync(Bucket, key);
                using var reader = new StreamReader(response.ResponseStream, Encoding.UTF8);
                var objectLines = (await reader.ReadToEndAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
                Assert.InRange(objectLines.Length, 1, 250);
                objects.Add((key, [.. objectLines.Select(static l => JsonDocument.Parse(l).RootElement.Clone())]));
            }

            var total = objects.Sum(static o => o.Lines.Count);
            if (total >= count)
            {
                Assert.Equal(count, total);
                return objects;
            }

            await Task.Delay(200);
        }

        throw new TimeoutException($"the archive did not hold {count} messages of {channel} within 30 s");
    }

    private async Task<List<string>> KeysAsync(string prefix)
    {
        var keys = new List<string>();
        var request = new ListObjectsV2Request { BucketName = Bucket, Prefix = prefix };
        for (var page = 0; page < 1000; page++)
        {
            var response = await _client.ListObjectsV2Async(request);
            keys.AddRange((response.S3Objects ?? []).Select(static o => o.Key));
            if (response.IsTruncated != true)
            {
                break;
            }

            request.ContinuationToken = response.NextContinuationToken;
        }

        keys.Sort(StringComparer.Ordinal);
        return keys;
    }
}

using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Relay.Testing;

namespace Relay.Functions.Tests;

/// <summary>The after-publish hook: called with what was acknowledged (seqs included), retried, and never delaying the ack.</summary>
public sealed class AfterPublishHookTests : IAsyncLifetime
{
    private readonly ConcurrentQueue<(string Path, int Try, JsonElement Body)> _calls = new();
    private readonly ConcurrentDictionary<string, int> _tries = new();
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private LoopbackServer _hook = null!;
    private RelayServer _server = null!;

    public async Task InitializeAsync()
    {
        _hook = await LoopbackServer.StartAsync(async context =>
        {
            using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
            var text = await reader.ReadToEndAsync(context.RequestAborted);
            var body = JsonDocument.Parse(text).RootElement.Clone();
            var key = context.Request.Path + text;
            var attempt = _tries.AddOrUpdate(key, 1, static (_, n) => n + 1);
            _calls.Enqueue((context.Request.Path.Value!, attempt, body));
            if (context.Request.Path == "/held")
            {
                await _release.Task.WaitAsync(context.RequestAborted);
            }

            // The flaky hook fails twice before it takes each call.
            context.Response.StatusCode = context.Request.Path == "/flaky" && attempt <= 2 ? 500 : 200;
        });
        _server = await RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Functions:Namespaces:audit:AfterPublish:Target"] = new Uri(_hook.Url, "flaky").ToString(),
            ["Relay:Functions:Namespaces:held:AfterPublish:Target"] = new Uri(_hook.Url, "held").ToString(),
            ["Relay:Functions:Namespaces:held:AfterPublish:Timeout"] = "00:00:30",
            ["Relay:Functions:FirstRetryDelay"] = "00:00:00.050",
            ["Relay:Ingress:PublishRatePerSecond"] = "1000000",
            ["Relay:Ingress:PublishBurst"] = "1000000",
        });
    }

    public async Task DisposeAsync()
    {
        _release.TrySetResult();
        await _server.DisposeAsync();
        await _hook.DisposeAsync();
    }

    [Fact]
    public async Task AfterPublish_HookFailsTwice_CalledAThirdTimeWithTheSameAcknowledgedMessage()
    {
        await using var publisher = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key, "alice"));
        var ack = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "audit:1", ["data"] = "hello", ["id"] = "k1" });
        Assert.Equal(1, ack.GetProperty("seq").GetInt64());

        var calls = await WaitForAsync(static c => c.Count(static x => x.Path == "/flaky") >= 3);
        var flaky = calls.Where(static c => c.Path == "/flaky").ToList();
        Assert.Equal([1, 2, 3], flaky.Select(static c => c.Try));
        var body = flaky[2].Body;
        Assert.Equal("afterPublish", body.GetProperty("type").GetString());
        Assert.Equal("audit:1", body.GetProperty("channel").GetString());
        Assert.Equal("alice", body.GetProperty("clientId").GetString());
        var message = Assert.Single(body.GetProperty("messages").EnumerateArray());
        Assert.Equal((1L, "k1", "hello"), (message.GetProperty("seq").GetInt64(), message.GetProperty("id").GetString(), message.GetProperty("data").GetString()));
    }

    [Fact]
    public async Task AfterPublish_HookHangs_EveryPublishIsAcknowledgedMeanwhile()
    {
        const int publishes = 200;
        await using var publisher = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        for (var i = 0; i < publishes; i++)
        {
            var ack = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "held:1", ["data"] = $"m{i}" });
            Assert.Equal(i + 1L, ack.GetProperty("seq").GetInt64());
        }

        // Every ack came while the hook held its calls (4 at a time) unanswered.
        await WaitForAsync(static c => c.Any(static x => x.Path == "/held"));
        Assert.InRange(_calls.Count(static x => x.Path == "/held"), 1, 4);
        _release.SetResult();
        var calls = await WaitForAsync(static c => c.Count(static x => x.Path == "/held") >= publishes);
        Assert.Equal(Enumerable.Range(1, publishes).Select(static s => (long)s), calls.Where(static c => c.Path == "/held").Select(static c => c.Body.GetProperty("messages")[0].GetProperty("seq").GetInt64()).Order());
    }

    private async Task<List<(string Path, int Try, JsonElement Body)>> WaitForAsync(Func<List<(string Path, int Try, JsonElement Body)>, bool> done)
    {
        for (var i = 0; i < 300; i++)
        {
            var calls = _calls.ToList();
            if (done(calls))
            {
                return calls;
            }

            await Task.Delay(100);
        }

        throw new TimeoutException($"the hook got {_calls.Count} calls in 30 s: " + string.Join(", ", _calls.Select(static c => $"{c.Path}#{c.Try}")));
    }
}

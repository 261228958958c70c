using System.Text.Json;
using System.Threading.Channels;
using Relay.Testing;

namespace Relay.Services.Tests.Pusher;

/// <summary>
/// <c>tests/interop-pusher/webhook-receiver.cjs</c>: a loopback HTTP receiver that checks every webhook with the
/// <c>pusher</c> SDK's <c>webhook().isValid()</c>. Gives the events one at a time, each with the POST it came in.
/// </summary>
internal sealed class PusherWebhookSink : IDisposable
{
    private readonly PusherScript _script;
    private readonly Channel<(JsonElement Post, JsonElement Event)> _events = Channel.CreateUnbounded<(JsonElement, JsonElement)>();
    private readonly List<JsonElement> _posts = [];
    private readonly Task _reading;
    private readonly CancellationTokenSource _stop = new();

    private PusherWebhookSink(PusherScript script, int port)
    {
        _script = script;
        Url = $"http://127.0.0.1:{port}/pusher/webhooks";
        _reading = Task.Run(ReadAsync);
    }

    public string Url { get; }

    /// <summary>Every POST so far (refused ones too).</summary>
    public IReadOnlyList<JsonElement> Posts
    {
        get
        {
            lock (_posts)
            {
                return [.. _posts];
            }
        }
    }

    public string Output => _script.Output;

    /// <summary>Starts a receiver that checks signatures with <paramref name="key"/> (<c>APP.KEY:SECRET</c>); the first <paramref name="fail"/> POSTs are answered 500.</summary>
    public static async Task<PusherWebhookSink> StartAsync(string key, TimeSpan timeout, int fail = 0)
    {
        var colon = key.IndexOf(':', StringComparison.Ordinal);
        var name = key[..colon];
        var script = PusherScript.Start("webhook-receiver.cjs", JsonSerializer.Serialize(new { key = name, secret = key[(colon + 1)..], appId = name[..name.IndexOf('.', StringComparison.Ordinal)], fail }));
        var listening = await script.NextAsync("listening", timeout);
        return new PusherWebhookSink(script, listening.GetProperty("port").GetInt32());
    }

    /// <summary>The next event (from an accepted POST) matching <paramref name="match"/>, skipping others; fails after <paramref name="timeout"/>.</summary>
    public async Task<(JsonElement Post, JsonElement Event)> NextAsync(Func<JsonElement, bool> match, TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                var item = await _events.Reader.ReadAsync(cancel.Token);
                if (match(item.Event))
                {
                    return item;
                }
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"no matching webhook event within {timeout}; receiver output:\n{_script.Output}");
        }
    }

    /// <summary>The next event named <paramref name="name"/> on <paramref name="channel"/>.</summary>
    public Task<(JsonElement Post, JsonElement Event)> NextAsync(string name, string channel, TimeSpan timeout) =>
        NextAsync(e => e.GetProperty("name").GetString() == name && e.GetProperty("channel").GetString() == channel, timeout);

    /// <summary>
    /// An accepted event matching <paramref name="match"/>, told at any time (before or after the call; none is consumed):
    /// events decided by different processes reach the receiver in any order.
    /// </summary>
    public async Task<JsonElement> WaitForAsync(Func<JsonElement, bool> match, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            foreach (var post in Posts)
            {
                if (post.GetProperty("status").GetInt32() == 200 && post.GetProperty("events").ValueKind == JsonValueKind.Array)
                {
                    foreach (var e in post.GetProperty("events").EnumerateArray())
                    {
                        if (match(e))
                        {
                            return e;
                        }
                    }
                }
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"no matching webhook event within {timeout}; receiver output:\n{_script.Output}");
            }

            await Task.Delay(50);
        }
    }

    /// <summary>An accepted event named <paramref name="name"/> on <paramref name="channel"/>, told at any time.</summary>
    public Task<JsonElement> WaitForAsync(string name, string channel, TimeSpan timeout) =>
        WaitForAsync(e => e.GetProperty("name").GetString() == name && e.GetProperty("channel").GetString() == channel, timeout);

    /// <summary>Accepted events so far that match, without waiting.</summary>
    public int Count(Func<JsonElement, bool> match)
    {
        var count = 0;
        foreach (var post in Posts)
        {
            if (post.GetProperty("status").GetInt32() == 200 && post.GetProperty("events").ValueKind == JsonValueKind.Array)
            {
                foreach (var e in post.GetProperty("events").EnumerateArray())
                {
                    count += match(e) ? 1 : 0;
                }
            }
        }

        return count;
    }

    public void Dispose()
    {
        _stop.Cancel();
        _script.Dispose();
        _reading.Wait(TimeSpan.FromSeconds(5));
        _stop.Dispose();
    }

    private async Task ReadAsync()
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                var post = await _script.NextAsync("webhook", TimeSpan.FromMinutes(10));
                lock (_posts)
                {
                    _posts.Add(post);
                }

                if (post.GetProperty("status").GetInt32() == 200 && post.GetProperty("events").ValueKind == JsonValueKind.Array)
                {
                    foreach (var e in post.GetProperty("events").EnumerateArray())
                    {
                        _events.Writer.TryWrite((post, e));
                    }
                }
            }
        }
        catch (Exception ex) when (ex is TimeoutException or ObjectDisposedException or InvalidOperationException)
        {
            // The script ended.
        }
        finally
        {
            _events.Writer.TryComplete();
        }
    }
}

using Relay.Testing;

namespace Relay.Services.Tests.Hostile;

/// <summary>
/// The connections that behave while a fuzzer runs: a publisher on the realtime WebSocket that publishes 1, 2, 3… on
/// <see cref="Channel"/> every 20 ms, and a watcher subscribed there that must get every one, in order, once the fuzz is
/// over (other watchers, on other protocols, may follow the same channel with <see cref="Published"/>).
/// </summary>
internal sealed class Bystander : IAsyncDisposable
{
    private readonly TestSocket _watcher;
    private readonly TestSocket _publisher;
    private const int MinimumPublishes = 20;

    private readonly CancellationTokenSource _stop = new();
    private Task<int>? _publishing;
    private int _published;

    private Bystander(string channel, TestSocket watcher, TestSocket publisher)
    {
        Channel = channel;
        _watcher = watcher;
        _publisher = publisher;
    }

    public string Channel { get; }

    /// <summary>Connects, subscribes the watcher and starts publishing.</summary>
    public static async Task<Bystander> StartAsync(RelayServer server, string channel = "bystander")
    {
        var watcher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key, "watcher"));
        var subscribed = await watcher.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel });
        Assert.Equal("ok", subscribed.GetProperty("type").GetString());
        var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key, "publisher"));
        var bystander = new Bystander(channel, watcher, publisher);
        bystander._publishing = bystander.PublishAlongAsync();
        return bystander;
    }

    /// <summary>
    /// Stops publishing (once at least 20 went through, however fast the fuzz was) and checks the watcher got every
    /// message in order; the count published.
    /// </summary>
    public async Task<int> FinishAsync()
    {
        for (var waited = 0; Volatile.Read(ref _published) < MinimumPublishes && waited < 600; waited++)
        {
            await Task.Delay(100);
        }

        await _stop.CancelAsync();
        var count = await _publishing!;
        var expected = 1;
        while (expected <= count)
        {
            // A fuzzer's own messages on the channel (Pusher client events) have a name; the publisher's have none.
            var message = await _watcher.ReceiveMessageAsync();
            if (!message.TryGetProperty("name", out _))
            {
                Assert.Equal(expected++, message.GetProperty("data").GetInt32());
            }
        }

        Assert.True(count >= MinimumPublishes, $"the publisher got only {count} publishes through in a minute");
        return count;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_publishing is not null)
        {
            try
            {
                await _publishing;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // The test failed before FinishAsync: its own assertion says why.
            }
        }

        await _publisher.DisposeAsync();
        await _watcher.DisposeAsync();
        _stop.Dispose();
    }

    private async Task<int> PublishAlongAsync()
    {
        var count = 0;
        while (!_stop.IsCancellationRequested)
        {
            var reply = await _publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = Channel, ["data"] = count + 1 });
            Assert.Equal("ok", reply.GetProperty("type").GetString());
            Volatile.Write(ref _published, ++count);
            await Task.Delay(20, CancellationToken.None);
        }

        return count;
    }
}

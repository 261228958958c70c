using System.Collections.Concurrent;
using System.Threading.Channels;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Relay.Amqp.Tests;

/// <summary>One broker for the collection: its tests run one after another, each on exchanges and queues of its own.</summary>
public sealed class BrokerFixture : IAsyncLifetime
{
    private RabbitMqBroker? _broker;

    public RabbitMqBroker Broker => _broker ?? throw new InvalidOperationException("the broker has not started");

    public async Task InitializeAsync() => _broker = await RabbitMqBroker.StartAsync().WaitAsync(TimeSpan.FromMinutes(3));

    public async Task DisposeAsync()
    {
        if (_broker is not null)
        {
            await _broker.DisposeAsync();
        }
    }

    /// <summary>Closes the bridge's connection <paramref name="name"/>, waiting (10 s at most) for it to be open after a previous cut.</summary>
    public async Task CloseBridgeConnectionAsync(string name)
    {
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (await Broker.CloseConnectionsAsync(name) == 0)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(10), $"no connection named {name} to close within 10 s; the broker has:\n{Broker.LastConnectionList}");
            await Task.Delay(50);
        }
    }

    /// <summary>A connection of the test's own (named so the tests never close it by mistake).</summary>
    public async Task<IConnection> ConnectAsync() =>
        await new ConnectionFactory { Uri = new Uri(Broker.Uri), ClientProvidedName = "relay-test-client", AutomaticRecoveryEnabled = false }
            .CreateConnectionAsync().WaitAsync(TimeSpan.FromSeconds(30));
}

[CollectionDefinition(Name)]
public sealed class BrokerCollection : ICollectionFixture<BrokerFixture>
{
    public const string Name = "RabbitMQ";
}

/// <summary>A delivery the test consumed: what it carried, copied out of the library's buffers.</summary>
public sealed record Received(string RoutingKey, IReadOnlyBasicProperties Properties, byte[] Body, bool Redelivered)
{
    public string Header(string name) =>
        Properties.Headers is { } headers && headers.TryGetValue(name, out var value)
            ? value switch
            {
                byte[] bytes => System.Text.Encoding.UTF8.GetString(bytes),
                _ => Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) ?? "",
            }
            : throw new KeyNotFoundException($"no header {name}");

    public bool HasHeader(string name) => Properties.Headers?.ContainsKey(name) == true;
}

/// <summary>Consumes a queue with auto-ack into an in-memory inbox the test reads with timeouts.</summary>
public sealed class QueueReader : IAsyncDisposable
{
    private readonly IChannel _channel;
    private readonly Channel<Received> _inbox = Channel.CreateUnbounded<Received>();

    private QueueReader(IChannel channel) => _channel = channel;

    public static async Task<QueueReader> StartAsync(IConnection connection, string queue)
    {
        var channel = await connection.CreateChannelAsync();
        var reader = new QueueReader(channel);
        var consumer = new AsyncEventingBasicConsumer(channel);
        consumer.ReceivedAsync += (_, e) =>
        {
            reader._inbox.Writer.TryWrite(new Received(e.RoutingKey, e.BasicProperties, e.Body.ToArray(), e.Redelivered));
            return Task.CompletedTask;
        };
        await channel.BasicConsumeAsync(queue, autoAck: true, consumer).WaitAsync(TimeSpan.FromSeconds(30));
        return reader;
    }

    public async Task<Received> ReceiveAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            return await _inbox.Reader.ReadAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"no delivery within {timeout}");
        }
    }

    /// <summary>Whatever arrives within <paramref name="quiet"/> of the last one.</summary>
    public async Task<List<Received>> DrainAsync(TimeSpan quiet)
    {
        var all = new List<Received>();
        while (true)
        {
            try
            {
                all.Add(await ReceiveAsync(quiet));
            }
            catch (TimeoutException)
            {
                return all;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _channel.CloseAsync().WaitAsync(TimeSpan.FromSeconds(10));
        _channel.Dispose();
    }
}

/// <summary>Declares what a test uses, and publishes as a backend would (persistent, confirmed).</summary>
public static class Topology
{
    public static async Task DeclareQueueAsync(IConnection connection, string queue, string exchange, string type = "topic", string key = "#")
    {
        await using var channel = await connection.CreateChannelAsync();
        await channel.ExchangeDeclareAsync(exchange, type, durable: true, autoDelete: false);
        await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false);
        await channel.QueueBindAsync(queue, exchange, key);
    }

    /// <summary>Publishes each message and waits for the broker's confirms, <paramref name="window"/> at a time.</summary>
    public static async Task PublishConfirmedAsync(IConnection connection, string exchange, IEnumerable<(string RoutingKey, BasicProperties Properties, byte[] Body)> messages, int window = 200)
    {
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true, outstandingPublisherConfirmationsRateLimiter: new ThrottlingRateLimiter(window * 2)));
        var pending = new ConcurrentQueue<Task>();
        foreach (var (key, properties, body) in messages)
        {
            pending.Enqueue(channel.BasicPublishAsync(exchange, key, mandatory: false, properties, body).AsTask());
            if (pending.Count >= window && pending.TryDequeue(out var oldest))
            {
                await oldest.WaitAsync(TimeSpan.FromSeconds(30));
            }
        }

        await Task.WhenAll(pending).WaitAsync(TimeSpan.FromSeconds(60));
    }
}

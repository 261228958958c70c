using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Relay.Testing;

namespace Relay.Amqp.Tests;

/// <summary>Outbound never holds up delivery: with the broker away, its bounded buffer fills and it drops, counting them.</summary>
public sealed class OutboundDropTests
{
    private const int Batches = 40;
    private const int PerBatch = 100;

    [Fact]
    public async Task Outbound_BrokerAwayUnderLoad_DropsPastItsBufferAndSubscribersGetEverything()
    {
        // A port nothing listens on: the bridge keeps trying to connect and buffers meanwhile.
        int port;
        using (var listener = new TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            listener.Start();
            port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        }

        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Amqp:Uri"] = $"amqp://guest:guest@127.0.0.1:{port}/",
            ["Relay:Amqp:App"] = RelayServer.AppId,
            ["Relay:Amqp:Exchange"] = "relay.out.away",
            ["Relay:Amqp:OutboundQueueBytes"] = "1048576",
        });
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        var subscribed = await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "load" });
        Assert.True(subscribed.GetProperty("type").GetString() == "ok", subscribed.ToString());

        // 4,000 messages of 1 KiB: about 5 MiB through a 1 MiB buffer.
        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        var padding = new string('x', 1024);
        var elapsed = Stopwatch.StartNew();
        for (var b = 0; b < Batches; b++)
        {
            var body = JsonSerializer.Serialize(Enumerable.Range(0, PerBatch).Select(i => new { data = new { n = (b * PerBatch) + i, padding } }));
            using var response = await http.PostAsync(new Uri("v1/channels/load/messages", UriKind.Relative), new StringContent(body, Encoding.UTF8, "application/json"));
            Assert.Equal(System.Net.HttpStatusCode.Created, response.StatusCode);
        }

        for (var n = 0; n < Batches * PerBatch; n++)
        {
            var message = await subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(n, message.GetProperty("data").GetProperty("n").GetInt32());
        }

        Assert.InRange(await PrometheusText.ScrapeAsync(server.BaseAddress, "relay_amqp_outbound_dropped_total"), 2000, Batches * PerBatch);
        Assert.InRange(await Metrics.SumAsync(server.BaseAddress, "relay_amqp_outbound_buffered_bytes"), 900_000, 1_048_576);
        Assert.Equal(0, await Metrics.SumAsync(server.BaseAddress, "relay_amqp_connected", "direction=\"outbound\""));
        Assert.True(elapsed.Elapsed < TimeSpan.FromSeconds(60), $"publishing and delivering took {elapsed.Elapsed}");
    }
}

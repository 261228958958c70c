using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client.Web;
using Grpc.Reflection.V1Alpha;
using Microsoft.Extensions.DependencyInjection;
using Relay.Grpc.V1;
using Relay.Ingress;
using Relay.Testing;

namespace Relay.Services.Tests.Grpc;

/// <summary>
/// The gRPC API's limits and its standard services on a node of their own: a Connect stream that stops reading is cut
/// as a slow consumer (50301) without holding up a fast one; reflection lists relay.v1.Realtime; health says SERVING;
/// gRPC-Web carries the unary calls on the HTTP port.
/// </summary>
public sealed class GrpcLimitsTests : IAsyncLifetime
{
    /// <summary>Send budget of the node here: far below what the flood puts through, above the validator's floor.</summary>
    private const int SendQueueBytes = 256 * 1024;

    private RelayServer _server = null!;

    public async Task InitializeAsync() => _server = await RelayServer.StartAsync(new Dictionary<string, string?>
    {
        ["Relay:Ingress:MaxMessageBytes"] = "4096",
        ["Relay:Ingress:HistoryPageBytes"] = "65536",
        ["Relay:Ingress:SendQueueBytes"] = SendQueueBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["Relay:Ingress:CloseTimeout"] = "00:00:30",
    });

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public async Task SlowReader_PastTheSendBudget_IsDisconnected50301WhileAFastReaderGetsEverything()
    {
        var channel = $"grpc-slow:{Guid.NewGuid():N}";
        using var grpc = GrpcClients.Channel(_server);
        var client = GrpcClients.Client(grpc);
        var key = GrpcClients.Key(RelayServer.Key);
        await using var slow = await GrpcStream.ConnectAsync(client, key);
        await slow.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = channel } });

        // The fast reader is on another HTTP/2 connection: a stalled stream must not hold up another subscriber.
        using var fastChannel = GrpcClients.Channel(_server);
        await using var fast = await GrpcStream.ConnectAsync(GrpcClients.Client(fastChannel), key);
        await fast.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = channel } });

        // The publisher too: a stalled stream fills its HTTP/2 connection's window as well, and calls on that
        // connection would wait behind it (a client's own problem, not the node's).
        using var publisherChannel = GrpcClients.Channel(_server);
        var publisher = GrpcClients.Client(publisherChannel);
        var node = _server.Services.GetRequiredService<IngressNode>();
        var cutBefore = node.SlowConsumerDisconnects;
        var payload = "\"" + new string('x', 1000) + "\"";

        // The slow stream stops taking frames: its client's HTTP/2 window fills, the node's writes wait, and its queue
        // grows with every batch until the budget is spent.
        var published = 0L;
        async Task PublishBatchAsync()
        {
            var batch = new PublishRequest { Channel = channel };
            for (var i = 0; i < 100; i++)
            {
                batch.Messages.Add(new PublishMessage { Data = GrpcClients.Json(payload) });
            }

            published = (await publisher.PublishAsync(batch, GrpcClients.Options(key))).Seqs[^1];
        }

        // Paused before anything is published: its client's window stays at its first size (it grows only as the
        // client reads), so the node's writes wait after about 64 KiB.
        slow.PauseReading();

        // At most 400 batches (40 MB, far past any window and the 256 KiB budget), or until the node cut it.
        for (var i = 0; i < 400 && node.SlowConsumerDisconnects == cutBefore; i++)
        {
            await PublishBatchAsync();
        }

        Assert.Equal(cutBefore + 1, node.SlowConsumerDisconnects);
        slow.ResumeReading();
        var frames = await slow.DrainUntilEndedAsync(TimeSpan.FromSeconds(30));
        var last = frames[^1];
        Assert.Equal(ServerFrame.FrameOneofCase.Disconnect, last.FrameCase);
        Assert.Equal(50301, last.Disconnect.Code);
        Assert.True(last.Disconnect.Reconnect);
        Assert.NotNull(slow.Ended);
        Assert.Equal(StatusCode.Unavailable, slow.Ended.StatusCode);
        Assert.Equal(50301, GrpcClients.RelayCode(slow.Ended));

        // What the slow stream got before the cut is in order with no gap, and far less than was published.
        var seqs = frames.Where(static f => f.FrameCase == ServerFrame.FrameOneofCase.Message).Select(static f => f.Message.Seq).ToList();
        Assert.Equal(Enumerable.Range(1, seqs.Count).Select(static s => (long)s), seqs);
        Assert.True(seqs.Count < published, $"the slow stream got {seqs.Count} of {published}");

        for (var seq = 1L; seq <= published; seq++)
        {
            Assert.Equal(seq, (await fast.ReceiveMessageAsync(TimeSpan.FromSeconds(30))).Message.Seq);
        }
    }

    [Fact]
    public async Task GrpcPort_WebSocketUpgrade_IsNotServedThere()
    {
        // Relay's own realtime transport serves plain upgrades at accept on the IP endpoints it binds; the gRPC port is
        // HTTP/2 only and stays Kestrel's, so an upgrade sent there is refused while the HTTP port serves it.
        var grpcPort = new Uri($"ws://127.0.0.1:{_server.GrpcPort}/v1/realtime?key={Uri.EscapeDataString(RelayServer.Key)}");
        await Assert.ThrowsAsync<System.Net.WebSockets.WebSocketException>(() => TestSocket.ConnectAsync(grpcPort));
        await using var served = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        Assert.Equal("connected", served.Connected.GetProperty("type").GetString());
    }

    [Fact]
    public async Task Reflection_ListsTheRealtimeServiceAndHealth()
    {
        using var grpc = GrpcClients.Channel(_server);
        var reflection = new ServerReflection.ServerReflectionClient(grpc);
        using var call = reflection.ServerReflectionInfo(deadline: DateTime.UtcNow + GrpcClients.Timeout);
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = string.Empty });
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        var services = call.ResponseStream.Current.ListServicesResponse.Service.Select(static s => s.Name).ToList();
        Assert.Contains("relay.v1.Realtime", services);
        Assert.Contains("grpc.health.v1.Health", services);

        await call.RequestStream.WriteAsync(new ServerReflectionRequest { FileContainingSymbol = "relay.v1.Realtime" });
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.NotEmpty(call.ResponseStream.Current.FileDescriptorResponse.FileDescriptorProto);
        await call.RequestStream.CompleteAsync();
    }

    [Fact]
    public async Task Health_OverallAndRealtime_AreServing()
    {
        using var grpc = GrpcClients.Channel(_server);
        var health = new Health.HealthClient(grpc);
        var deadline = DateTime.UtcNow + GrpcClients.Timeout;
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, (await health.CheckAsync(new HealthCheckRequest(), deadline: deadline)).Status);
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, (await health.CheckAsync(new HealthCheckRequest { Service = "relay.v1.Realtime" }, deadline: deadline)).Status);
    }

    [Theory]
    [InlineData(GrpcWebMode.GrpcWeb, false)]
    [InlineData(GrpcWebMode.GrpcWebText, false)]
    [InlineData(GrpcWebMode.GrpcWeb, true)]
    [InlineData(GrpcWebMode.GrpcWebText, true)]
    public async Task GrpcWeb_OnTheHttpPort_PublishesAndReadsHistoryWithTheProtocolsErrors(GrpcWebMode mode, bool gzip)
    {
        // Text and gzip requests are decoded once by GrpcUnaryFraming and handed on decoded; the answer keeps the client's form.
        using var web = GrpcClients.Channel(_server, web: true, mode);
        var client = GrpcClients.Client(web);
        var channel = $"grpc-web:{Guid.NewGuid():N}";
        var key = GrpcClients.Key(RelayServer.Key);
        if (gzip)
        {
            key.Add("grpc-internal-encoding-request", "gzip");
        }

        var options = GrpcClients.Options(key);

        var published = await client.PublishAsync(GrpcClients.Publish(channel, "{\"from\":\"browser\"}"), options);
        Assert.Equal(1, published.Seqs.Single());
        var history = await client.HistoryAsync(new HistoryRequest { Channel = channel }, options);
        Assert.Equal("{\"from\":\"browser\"}", history.Messages.Single().Data.Json);

        var refused = await Assert.ThrowsAsync<RpcException>(() => client.PublishAsync(GrpcClients.Publish(channel, "1"), GrpcClients.Options(GrpcClients.Key(RelayServer.SubscribeOnlyKey))).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Equal(40300, GrpcClients.RelayCode(refused));

        // The HTTP port is HTTP/1.1 here: plain gRPC is on its own port, and this one still answers the HTTP API.
        using var http = new HttpClient { BaseAddress = _server.BaseAddress };
        Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync(new Uri("healthz", UriKind.Relative)).WaitAsync(GrpcClients.Timeout)).StatusCode);
    }
}

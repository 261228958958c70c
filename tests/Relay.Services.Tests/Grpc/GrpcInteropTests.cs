using System.Diagnostics;
using System.Text.Json;
using Relay.Grpc.V1;
using Relay.Testing;

namespace Relay.Services.Tests.Grpc;

/// <summary>
/// @grpc/grpc-js 1.14 with @grpc/proto-loader 0.8 (tests/interop-grpc), loading protos/relay/v1 at run time, against a
/// real node: to and from WebSocket clients with their seqs, idempotent publish, binary payloads, a bad frame, refused
/// credentials with the protocol's code in the trailer, recovery with since after a reconnect, and gzip requests.
/// </summary>
public sealed class GrpcInteropTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly RelayServer _server = fixture.Server;

    private string Address => $"127.0.0.1:{_server.GrpcPort}";

    [Fact]
    public async Task GrpcJs_Stream_GetsWebSocketPublishesAndItsPublishesReachWebSocket()
    {
        var channel = $"grpc-js:{Guid.NewGuid():N}";
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key, "ws"));
        await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = channel });
        using var js = GrpcJs.Start("stream", Address, RelayServer.Key, channel, "3");
        var subscribed = await js.NextAsync("subscribed", Timeout);
        Assert.Equal(0, subscribed.GetProperty("seq").GetInt64());

        for (var i = 1; i <= 3; i++)
        {
            await socket.RequestAsync(new() { ["type"] = "publish", ["channel"] = channel, ["data"] = new { n = i } });
        }

        for (var i = 1; i <= 3; i++)
        {
            var message = await js.NextAsync("message", Timeout);
            Assert.Equal(i, message.GetProperty("seq").GetInt64());
            Assert.Equal(i, message.GetProperty("data").GetProperty("n").GetInt32());
            Assert.Equal("ws", message.GetProperty("clientId").GetString());
        }

        // Its publish (sent twice with one id) is seq 4 once, on the WebSocket too, with its client id.
        var published = await js.NextAsync("published", Timeout);
        Assert.Equal(4, published.GetProperty("seq").GetInt64());
        Assert.Equal(4, published.GetProperty("again").GetInt64());
        Assert.Equal(40000, (await js.NextAsync("error", Timeout)).GetProperty("code").GetInt32());
        Assert.Equal(5, (await js.NextAsync("unary", Timeout)).GetProperty("seq").GetInt64());
        var history = await js.NextAsync("history", Timeout);
        Assert.Equal([1L, 2, 3, 4, 5], history.GetProperty("seqs").EnumerateArray().Select(static s => s.GetInt64()));
        Assert.Equal("000102ff", history.GetProperty("last").GetString());
        Assert.Equal(0, (await js.NextAsync("ended", Timeout)).GetProperty("code").GetInt32());
        Assert.Equal(0, await js.ExitAsync(Timeout));

        for (var i = 1; i <= 3; i++)
        {
            await socket.ReceiveMessageAsync();
        }

        var fromJs = await socket.ReceiveMessageAsync();
        Assert.Equal(4, fromJs.GetProperty("seq").GetInt64());
        Assert.Equal("grpc-js", fromJs.GetProperty("clientId").GetString());
        Assert.Equal("grpc-js", fromJs.GetProperty("data").GetProperty("from").GetString());

        // Bytes that are not JSON reach a WebSocket client base64, exactly.
        var binary = await socket.ReceiveMessageAsync();
        Assert.Equal(5, binary.GetProperty("seq").GetInt64());
        Assert.Equal("base64", binary.GetProperty("encoding").GetString());
        Assert.Equal([0, 1, 2, 255], Convert.FromBase64String(binary.GetProperty("data").GetString()!));
    }

    [Theory]
    [InlineData("test.root:wrong-secret-0123456789", 16, 40102)]
    [InlineData(RelayServer.SubscribeOnlyKey, 7, 40300)]
    public async Task GrpcJs_RefusedCall_SeesTheStatusAndTheProtocolsCode(string key, int grpcCode, int relayCode)
    {
        using var js = GrpcJs.Start("refused", Address, key, $"grpc-js-refused:{Guid.NewGuid():N}");
        var unary = await js.NextAsync("unary", Timeout);
        Assert.True(unary.GetProperty("refused").GetBoolean());
        Assert.Equal(grpcCode, unary.GetProperty("grpcCode").GetInt32());
        Assert.Equal(relayCode, unary.GetProperty("relayCode").GetInt32());
        Assert.True(unary.GetProperty("hasDetails").GetBoolean());
        if (relayCode == 40102)
        {
            // Bad credentials end a Connect stream before its first frame.
            var stream = await js.NextAsync("stream", Timeout);
            Assert.Equal(16, stream.GetProperty("grpcCode").GetInt32());
            Assert.Equal(40102, stream.GetProperty("relayCode").GetInt32());
            Assert.Equal(0, await js.ExitAsync(Timeout));
        }
    }

    [Fact]
    public async Task GrpcJs_SubscribeWithSince_RecoversWhatWasMissedInOrder()
    {
        var channel = $"grpc-js-since:{Guid.NewGuid():N}";
        using var grpc = GrpcClients.Channel(_server);
        var client = GrpcClients.Client(grpc);
        var options = GrpcClients.Options(GrpcClients.Key(RelayServer.Key));
        var first = await client.PublishAsync(GrpcClients.Publish(channel, "1"), options);
        var history = await client.HistoryAsync(new HistoryRequest { Channel = channel }, options);
        for (var i = 2; i <= 10; i++)
        {
            await client.PublishAsync(GrpcClients.Publish(channel, i.ToString(System.Globalization.CultureInfo.InvariantCulture)), options);
        }

        using var js = GrpcJs.Start("since", Address, RelayServer.Key, channel, history.Epoch, first.Seqs[0].ToString(System.Globalization.CultureInfo.InvariantCulture), "9");
        var subscribed = await js.NextAsync("subscribed", Timeout);
        Assert.True(subscribed.GetProperty("recovered").GetBoolean());
        Assert.Equal(10, subscribed.GetProperty("seq").GetInt64());
        for (var seq = 2; seq <= 10; seq++)
        {
            Assert.Equal(seq, (await js.NextAsync("message", Timeout)).GetProperty("seq").GetInt64());
        }

        Assert.Equal(0, await js.ExitAsync(Timeout));
    }

    [Fact]
    public async Task GrpcJs_GzipRequests_AreServedAndOneThatExpandsPastTheLimitIsRefused41300()
    {
        // grpc-js compresses every request: the node decompresses each once (GrpcUnaryFraming), and stops one of 2 MiB that
        // gzip made a few KiB as it passes Relay:Grpc:MaxReceiveMessageBytes (1 MiB).
        var channel = $"grpc-js-gzip:{Guid.NewGuid():N}";
        using var js = GrpcJs.Start("gzip", Address, RelayServer.Key, channel);
        Assert.Equal(1, (await js.NextAsync("unary", Timeout)).GetProperty("seq").GetInt64());
        var large = await js.NextAsync("large", Timeout);
        Assert.True(large.GetProperty("refused").GetBoolean());
        Assert.Equal(8, large.GetProperty("grpcCode").GetInt32());
        Assert.Equal(41300, large.GetProperty("relayCode").GetInt32());
        Assert.True(large.GetProperty("hasDetails").GetBoolean());
        Assert.Contains("decompresses past", large.GetProperty("details").GetString(), StringComparison.Ordinal);
        var history = await js.NextAsync("history", Timeout);
        Assert.Equal([1], history.GetProperty("seqs").EnumerateArray().Select(static s => s.GetInt64()));
        Assert.Equal("{\"from\":\"grpc-js gzip\"}", history.GetProperty("json")[0].GetString());
        Assert.Equal(0, await js.ExitAsync(Timeout));
    }

    /// <summary>tests/interop-grpc/grpc-client.cjs under Node: its JSON lines as they come, killed by its PID when disposed.</summary>
    private sealed class GrpcJs(ProcessStartInfo start) : LineProcess(start, NodeScript.Install)
    {
        public static GrpcJs Start(params string[] arguments) =>
            new(NodeScript.StartInfo(Path.Combine(NodeScript.RepositoryRoot, "tests", "interop-grpc"), Path.Combine("@grpc", "grpc-js"), "@grpc/grpc-js is", "grpc-client.cjs", arguments));

        /// <summary>The next line whose event is <paramref name="name"/>; a failed line or silence fails the test with what it printed last.</summary>
        public Task<JsonElement> NextAsync(string name, TimeSpan timeout) => NextJsonAsync(
            e =>
            {
                var @event = e.GetProperty("event").GetString();
                if (@event == "failed")
                {
                    Assert.Fail($"grpc-client.cjs failed before a '{name}' line: {e.GetRawText()}\n{LastLines(100)}");
                }

                return @event == name;
            },
            timeout,
            $"'{name}' line");
    }
}

using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Relay.Ingress.Realtime;
using Relay.Testing;

namespace Relay.Services.Tests.WebSockets;

/// <summary>Relay's WebSocket on its own transport, spoken to byte by byte where a framework client would hide the protocol.</summary>
public abstract class PipeWebSocketSpec : IAsyncLifetime
{
    private RelayServer _server = null!;

    public async Task InitializeAsync()
    {
        var settings = new Dictionary<string, string?> { ["Relay:Ingress:HeartbeatMs"] = "1000" };
        ConfigureBus(settings);
        _server = await StartServerAsync(settings);
    }

    public async Task DisposeAsync() => await _server.DisposeAsync();

    /// <summary>
    /// Lets a variant start the server beside what its bus needs (a Dapr sidecar, attached once the server listens);
    /// none means the server alone.
    /// </summary>
    protected virtual Task<RelayServer> StartServerAsync(IDictionary<string, string?> settings) => RelayServer.StartAsync(settings);

    /// <summary>Lets a variant put the server on another bus, or set how it waits for input; none means the in-memory bus and the defaults.</summary>
    protected virtual void ConfigureBus(IDictionary<string, string?> settings)
    {
    }

    private sealed class RawClient : IAsyncDisposable
    {
        private readonly TcpClient _tcp = new();
        private NetworkStream _stream = null!;

        /// <param name="send">Writes the request (all of it at once when null).</param>
        public static async Task<(RawClient Client, string Head)> ConnectAsync(Uri baseAddress, string target, string extraHeaders = "", Func<Stream, byte[], Task>? send = null)
        {
            var client = new RawClient();
            await client._tcp.ConnectAsync(IPAddress.Loopback, baseAddress.Port).WaitAsync(TestSocket.DefaultTimeout);
            client._stream = client._tcp.GetStream();
            var request = $"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extraHeaders}\r\n";
            await (send ?? (static (stream, bytes) => stream.WriteAsync(bytes).AsTask()))(client._stream, Encoding.ASCII.GetBytes(request));
            var head = new StringBuilder();
            while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
            {
                var one = new byte[1];
                Assert.Equal(1, await client._stream.ReadAsync(one).AsTask().WaitAsync(TestSocket.DefaultTimeout));
                head.Append((char)one[0]);
            }

            return (client, head.ToString());
        }

        public Task SendFrameAsync(int opcode, byte[] payload, bool masked = true, bool final = true) =>
            _stream.WriteAsync(Frame(opcode, payload, masked, final)).AsTask().WaitAsync(TestSocket.DefaultTimeout);

        public static byte[] Frame(int opcode, byte[] payload, bool masked = true, bool final = true) => RawConnection.Frame(opcode, payload, masked, final);

        public async Task<(int Opcode, byte[] Payload)> ReadFrameAsync()
        {
            var header = await ReadExactlyAsync(2);
            Assert.Equal(0, header[1] & 0x80);
            long length = header[1] & 0x7F;
            if (length == 126)
            {
                length = BinaryPrimitives.ReadUInt16BigEndian(await ReadExactlyAsync(2));
            }
            else if (length == 127)
            {
                length = (long)BinaryPrimitives.ReadUInt64BigEndian(await ReadExactlyAsync(8));
            }

            return (header[0] & 0x0F, await ReadExactlyAsync((int)length));
        }

        /// <summary>The next text frame, parsed.</summary>
        public async Task<JsonElement> ReadJsonAsync() => JsonDocument.Parse((await ReadFrameOfAsync(0x1)).Payload).RootElement;

        public async Task<(int Opcode, byte[] Payload)> ReadFrameOfAsync(int opcode)
        {
            while (true)
            {
                var frame = await ReadFrameAsync();
                if (frame.Opcode == opcode)
                {
                    return frame;
                }
            }
        }

        /// <summary>Reads (and drops) whatever comes until the server ends the connection; false if it is still open after the timeout.</summary>
        public async Task<bool> EndsWithinAsync(TimeSpan timeout)
        {
            var buffer = new byte[4096];
            using var cts = new CancellationTokenSource(timeout);
            try
            {
                while (await _stream.ReadAsync(buffer, cts.Token) > 0)
                {
                }

                return true;
            }
            catch (IOException)
            {
                return true;
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }

        public Task WriteAsync(ReadOnlyMemory<byte> bytes) => _stream.WriteAsync(bytes).AsTask().WaitAsync(TestSocket.DefaultTimeout);

        private async Task<byte[]> ReadExactlyAsync(int count)
        {
            var buffer = new byte[count];
            await _stream.ReadExactlyAsync(buffer).AsTask().WaitAsync(TestSocket.DefaultTimeout);
            return buffer;
        }

        public ValueTask DisposeAsync()
        {
            _tcp.Dispose();
            return ValueTask.CompletedTask;
        }
    }

    private string Target => "/v1/realtime?key=" + Uri.EscapeDataString(RelayServer.Key);

    [Fact]
    public async Task Upgrade_AnswersWithTheRfc6455AcceptKeyAndSubprotocol()
    {
        var (client, head) = await RawClient.ConnectAsync(_server.BaseAddress, Target, "Sec-WebSocket-Protocol: other, relay.v1.json\r\n");
        await using var _ = client;
        Assert.StartsWith("HTTP/1.1 101", head, StringComparison.Ordinal);
        Assert.Contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", head, StringComparison.Ordinal);
        Assert.Contains("Sec-WebSocket-Protocol: relay.v1.json", head, StringComparison.Ordinal);
        var (opcode, payload) = await client.ReadFrameAsync();
        Assert.Equal(0x1, opcode);
        Assert.Equal("connected", JsonDocument.Parse(payload).RootElement.GetProperty("type").GetString());
    }

    [Fact]
    public async Task Ping_IsAnsweredWithPongCarryingTheSamePayload()
    {
        var (client, _) = await RawClient.ConnectAsync(_server.BaseAddress, Target);
        await using var __ = client;
        await client.ReadFrameAsync();
        await client.SendFrameAsync(0x9, "are you there"u8.ToArray());
        var (_, payload) = await client.ReadFrameOfAsync(0xA);
        Assert.Equal("are you there", Encoding.UTF8.GetString(payload));
    }

    [Fact]
    public async Task FragmentedRequest_IsReassembled()
    {
        var (client, _) = await RawClient.ConnectAsync(_server.BaseAddress, Target);
        await using var __ = client;
        await client.ReadFrameAsync();
        await client.SendFrameAsync(0x1, "{\"type\":\"pi"u8.ToArray(), final: false);
        await client.SendFrameAsync(0x9, "interleaved control frame"u8.ToArray());
        await client.SendFrameAsync(0x0, "ng\",\"ref\":5}"u8.ToArray());
        var reply = await client.ReadJsonAsync();
        Assert.Equal("pong", reply.GetProperty("type").GetString());
        Assert.Equal(5, reply.GetProperty("ref").GetInt32());
    }

    [Fact]
    public async Task BurstInOneWrite_MixingWholeFramesWithFragmentsAndPings_IsAnsweredInOrder()
    {
        // Whole frames already in the buffer are taken in one step; a ping, a fragmented message and a frame cut by the
        // end of a write go the frame-by-frame way. Each request must still be read whole and answered in order.
        var (client, _) = await RawClient.ConnectAsync(_server.BaseAddress, Target);
        await using var __ = client;
        await client.ReadFrameAsync();
        static byte[] Ping(int reference) => Encoding.UTF8.GetBytes($"{{\"type\":\"ping\",\"ref\":{reference}}}");
        var burst = new List<byte>();
        var reference = 0;
        for (var i = 0; i < 20; i++)
        {
            burst.AddRange(RawClient.Frame(0x1, Ping(++reference)));
            if (i % 5 == 1)
            {
                burst.AddRange(RawClient.Frame(0x9, "between"u8.ToArray()));
            }

            if (i % 7 == 3)
            {
                var split = Ping(++reference);
                burst.AddRange(RawClient.Frame(0x1, split[..5], final: false));
                burst.AddRange(RawClient.Frame(0x0, split[5..]));
            }
        }

        var last = RawClient.Frame(0x1, Ping(++reference));
        burst.AddRange(last[..(last.Length / 2)]);
        await client.WriteAsync(burst.ToArray());
        await Task.Delay(20);
        await client.WriteAsync(last.AsMemory(last.Length / 2));

        for (var expected = 1; expected <= reference; expected++)
        {
            var reply = await client.ReadJsonAsync();
            Assert.Equal("pong", reply.GetProperty("type").GetString());
            Assert.Equal(expected, reply.GetProperty("ref").GetInt32());
        }
    }

    [Fact]
    public async Task UnmaskedClientFrame_IsAProtocolErrorClosedWith1002()
    {
        var (client, _) = await RawClient.ConnectAsync(_server.BaseAddress, Target);
        await using var __ = client;
        await client.ReadFrameAsync();
        await client.SendFrameAsync(0x1, "{\"type\":\"ping\"}"u8.ToArray(), masked: false);
        var (_, payload) = await client.ReadFrameOfAsync(0x8);
        Assert.Equal(1002, BinaryPrimitives.ReadUInt16BigEndian(payload));
    }

    [Fact]
    public async Task QuietClient_IsPingedAtTheHeartbeat()
    {
        var (client, _) = await RawClient.ConnectAsync(_server.BaseAddress, Target);
        await using var __ = client;
        await client.ReadFrameAsync();
        var (opcode, _) = await client.ReadFrameAsync();
        Assert.Equal(0x9, opcode);
    }

    [Fact]
    public async Task PeerThatNeverAnswersPings_IsCut()
    {
        var (client, _) = await RawClient.ConnectAsync(_server.BaseAddress, Target);
        await using var __ = client;
        await client.ReadFrameAsync();
        var (opcode, _) = await client.ReadFrameAsync();
        Assert.Equal(0x9, opcode);

        // No pong, no other frame: within a few heartbeats the server drops the socket.
        var cut = false;
        for (var i = 0; i < 20 && !cut; i++)
        {
            try
            {
                await client.ReadFrameAsync();
            }
            catch (Exception ex) when (ex is IOException or EndOfStreamException or SocketException)
            {
                cut = true;
            }
        }

        Assert.True(cut, "a peer that never answers pings must be disconnected");
    }

    [Fact]
    public async Task CloseFromClient_IsAnsweredWithClose()
    {
        await using var socket = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        await socket.Socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None).WaitAsync(TestSocket.DefaultTimeout);
        Assert.Equal(WebSocketState.Closed, socket.Socket.State);
    }

    [Fact]
    public async Task UpgradeWithBadKey_IsRefusedByTheHttpEndpointWithItsErrorBody()
    {
        var (client, head) = await RawClient.ConnectAsync(_server.BaseAddress, "/v1/realtime?key=test.root:wrong-secret-000000000");
        await using var _ = client;
        Assert.StartsWith("HTTP/1.1 401", head, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PlainUpgrade_IsServedOnTheBareSocket_WhileHttpRequestsStayWithKestrel()
    {
        var listener = _server.Services.GetRequiredService<RealtimeListenerFactory>();
        var (taken, handed) = (listener.Taken, listener.Handed);
        var (client, head) = await RawClient.ConnectAsync(_server.BaseAddress, Target);
        await using var _ = client;
        Assert.StartsWith("HTTP/1.1 101", head, StringComparison.Ordinal);
        Assert.Equal(taken + 1, listener.Taken);

        using var http = new HttpClient { BaseAddress = _server.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("healthz")).StatusCode);
        Assert.True(listener.Handed > handed, "the HTTP request did not reach Kestrel through the listener");
        Assert.Equal(taken + 1, listener.Taken);
    }

    [Fact]
    public async Task FramesSentWithTheUpgradeInOneWrite_AreRead()
    {
        var ping = RawClient.Frame(0x9, "early"u8.ToArray());
        var (client, head) = await RawClient.ConnectAsync(_server.BaseAddress, Target, send: (stream, request) => stream.WriteAsync(request.Concat(ping).ToArray()).AsTask());
        await using var _ = client;
        Assert.StartsWith("HTTP/1.1 101", head, StringComparison.Ordinal);
        var (_, payload) = await client.ReadFrameOfAsync(0xA);
        Assert.Equal("early", Encoding.UTF8.GetString(payload));
    }

    [Fact]
    public async Task UpgradeArrivingInPieces_IsHandedToKestrel_AndStillServed()
    {
        var listener = _server.Services.GetRequiredService<RealtimeListenerFactory>();
        var handed = listener.Handed;
        var (client, head) = await RawClient.ConnectAsync(_server.BaseAddress, Target, send: static async (stream, request) =>
        {
            await stream.WriteAsync(request.AsMemory(0, 20));
            await stream.FlushAsync();
            await Task.Delay(300);
            await stream.WriteAsync(request.AsMemory(20));
        });
        await using var _ = client;
        Assert.StartsWith("HTTP/1.1 101", head, StringComparison.Ordinal);
        Assert.True(listener.Handed > handed, "a partial head should go to Kestrel");
        await client.SendFrameAsync(0x9, "split"u8.ToArray());
        Assert.Equal("split", Encoding.UTF8.GetString((await client.ReadFrameOfAsync(0xA)).Payload));
    }

    [Fact]
    public async Task ClientSilentPastTheFirstBytesWait_IsHandedToKestrel_AndStillServed()
    {
        var (client, head) = await RawClient.ConnectAsync(_server.BaseAddress, Target, send: static async (stream, request) =>
        {
            await Task.Delay(RealtimeListenerFactory.FirstBytesWait * 2 + TimeSpan.FromMilliseconds(500));
            await stream.WriteAsync(request);
        });
        await using var _ = client;
        Assert.StartsWith("HTTP/1.1 101", head, StringComparison.Ordinal);
        await client.SendFrameAsync(0x9, "late"u8.ToArray());
        Assert.Equal("late", Encoding.UTF8.GetString((await client.ReadFrameOfAsync(0xA)).Payload));
    }

    [Fact]
    public async Task LargeFrameTrickledInSmallPieces_IsReassembled()
    {
        var (client, _) = await RawClient.ConnectAsync(_server.BaseAddress, Target);
        await using var __ = client;
        await client.ReadFrameAsync();
        var data = new string('x', 60_000);
        var frame = RawClient.Frame(0x1, JsonSerializer.SerializeToUtf8Bytes(new { type = "publish", @ref = 7, channel = "trickle", data }));
        for (var offset = 0; offset < frame.Length; offset += 7_000)
        {
            await client.WriteAsync(frame.AsMemory(offset, Math.Min(7_000, frame.Length - offset)));
            await Task.Delay(5);
        }

        var reply = await client.ReadJsonAsync();
        Assert.Equal("ok", reply.GetProperty("type").GetString());
        Assert.Equal(7, reply.GetProperty("ref").GetInt32());
    }

    [Fact]
    public async Task StoppingTheServer_EndsConnectionsOnTheBareSocket_AndStopsListening()
    {
        var settings = new Dictionary<string, string?>();
        ConfigureBus(settings);
        var server = await StartServerAsync(settings);
        var port = server.BaseAddress.Port;
        RawClient? client = null;
        try
        {
            (client, _) = await RawClient.ConnectAsync(server.BaseAddress, Target);
            await client.ReadFrameAsync();
            Assert.Equal(1, server.Services.GetRequiredService<RealtimeListenerFactory>().Taken);
        }
        finally
        {
            await server.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(20));
        }

        await using (client)
        {
            Assert.True(await client.EndsWithinAsync(TimeSpan.FromSeconds(10)), "the connection outlived the server");
        }

        using var again = new TcpClient();
        await Assert.ThrowsAnyAsync<SocketException>(() => again.ConnectAsync(IPAddress.Loopback, port).WaitAsync(TestSocket.DefaultTimeout));
    }

    [Fact]
    public async Task PlainGetWithValidKey_IsHandedToKestrel_AndAnswered400With40000()
    {
        var listener = _server.Services.GetRequiredService<RealtimeListenerFactory>();
        var taken = listener.Taken;
        using var http = new HttpClient { BaseAddress = _server.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        using var response = await http.GetAsync(Target.TrimStart('/'));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(40000, body.GetProperty("error").GetProperty("code").GetInt32());
        Assert.Equal(taken, listener.Taken);
    }
}

using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Google.Protobuf;
using Grpc.Core;
using Relay.Grpc.V1;
using Relay.Services.Tests.Grpc;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Services.Tests.Hostile;

/// <summary>
/// The gRPC API fuzzed over real HTTP/2 (SocketsHttpHandler, bytes chosen by the test) and gRPC-Web on the HTTP port:
/// valid length-prefixed relay.v1 messages for every method with one mutation each (a wrong length, the compressed flag
/// with no or a bogus <c>grpc-encoding</c>, other flag values, frames cut short, bits flipped, invalid protobuf, invalid
/// UTF-8 in a string field, unknown fields, two messages, past the receive limit), wrong content types, no
/// <c>te: trailers</c>, credentials mutated, gRPC-Web binary and text; and Connect streams driven by the
/// generated client with random sequences of valid requests in any order. Every call ends with a gRPC status (or the
/// HTTP 415/426 the framework gives another content type or HTTP/1.1): never UNKNOWN (an exception nothing caught) nor
/// INTERNAL, a Relay code in ErrorInfo where Relay refused; every stream request gets its reply or an error frame with
/// a 4xxxx code; nothing is logged as an error; a bystander gRPC stream and a WebSocket watcher get every message in
/// order. Found by it: invalid protobuf and broken framing ended calls UNKNOWN with an error logged, or streams OK
/// (<see cref="InvalidProtobufOrFraming_EndsInvalidArgument40000_NothingLogged"/>). Figures: docs/security.md.
/// </summary>
[Collection(nameof(HostileCollection))]
public sealed class GrpcFuzzTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int RawCases = 800;
    private const int Streams = 8;
    private const int RequestsPerStream = 60;

    // Relay:Grpc:MaxReceiveMessageBytes by default.
    private const int MaxReceiveBytes = 1024 * 1024;

    private static readonly string[] s_methods = ["Publish", "History", "Presence", "Channels", "Connect"];

    private HostileServer _host = null!;

    public async Task InitializeAsync() => _host = await HostileServer.StartAsync();

    public async Task DisposeAsync() => await _host.DisposeAsync();

    [Fact(Timeout = 600_000)]
    public async Task MutatedFramesAndCalls_EndWithAGrpcStatus_NeverAnUnhandledError_AndOthersAreServed()
    {
        var server = _host.Server;
        using var grpc = GrpcClients.Channel(server);
        var client = GrpcClients.Client(grpc);
        await using var watcher = await GrpcStream.ConnectAsync(client, GrpcClients.Key(RelayServer.Key));
        Assert.Equal(ServerFrame.FrameOneofCase.Subscribed, (await watcher.RequestAsync(new ClientFrame { Subscribe = new SubscribeRequest { Channel = "bystander" } })).FrameCase);
        await using var bystander = await Bystander.StartAsync(server, "bystander");

        var tally = new ConcurrentDictionary<string, int>(StringComparer.Ordinal);
        var failures = new ConcurrentQueue<string>();
        var random = new Random(20261205);

        // Raw HTTP/2 and gRPC-Web, four calls at a time.
        using var http2 = new HttpClient(new SocketsHttpHandler { EnableMultipleHttp2Connections = true }) { Timeout = TimeSpan.FromSeconds(60) };
        using var web = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        var cases = Enumerable.Range(0, RawCases).Select(i => (Index: i, Seed: random.Next())).ToList();
        foreach (var batch in cases.Chunk(4))
        {
            await Task.WhenAll(batch.Select(async c =>
            {
                var caseRandom = new Random(c.Seed);
                var isWeb = caseRandom.Next(4) == 0;
                var (request, mutation) = isWeb ? WebCase(caseRandom, server) : RawCase(caseRandom, server);
                // A gRPC-Web content type sent to the gRPC port is answered as gRPC-Web (the status in the body).
                var webAnswer = isWeb || request.Content!.Headers.ContentType?.MediaType?.StartsWith("application/grpc-web", StringComparison.Ordinal) == true;
                var outcome = await RunRawAsync(isWeb ? web : http2, request, webAnswer);
                tally.AddOrUpdate((isWeb ? "web " : "h2 ") + outcome, 1, static (_, n) => n + 1);
                if (outcome.StartsWith("FAIL", StringComparison.Ordinal))
                {
                    failures.Enqueue($"case {c.Index} ({mutation}, seed {c.Seed}): {outcome}");
                }
            }));
        }

        // Connect streams with requests in any order, all at once.
        await Task.WhenAll(Enumerable.Range(0, Streams).Select(i => StreamAsync(client, new Random(random.Next()), i, tally, failures)));

        var count = await bystander.FinishAsync();
        for (var expected = 1; expected <= count; expected++)
        {
            var message = await watcher.ReceiveMessageAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(expected.ToString(System.Globalization.CultureInfo.InvariantCulture), message.Message.Data.Json);
        }

        foreach (var (outcome, n) in tally.OrderBy(static t => t.Key, StringComparer.Ordinal))
        {
            output.WriteLine($"{outcome}: {n}");
        }

        output.WriteLine($"bystander: {count} messages in order on the WebSocket and the gRPC stream");
        Assert.True(failures.IsEmpty, string.Join("\n", failures.Take(10)));
        _host.AssertNoErrorLogged();

        // Still serving: a unary publish and its history.
        var options = GrpcClients.Options(GrpcClients.Key(RelayServer.Key));
        await client.PublishAsync(GrpcClients.Publish("after-fuzz", "{\"ok\":true}"), options);
        Assert.Equal("{\"ok\":true}", (await client.HistoryAsync(new HistoryRequest { Channel = "after-fuzz" }, options)).Messages.Single().Data.Json);
    }

    [Theory]
    [InlineData("Publish", "varint")]
    [InlineData("History", "varint")]
    [InlineData("Connect", "varint")]
    [InlineData("Publish", "utf8")]
    [InlineData("Connect", "utf8")]
    [InlineData("Connect", "flag")]
    [InlineData("Publish", "flag")]
    [InlineData("History", "length")]
    [InlineData("Channels", "two messages")]
    [InlineData("Presence", "gzip that is not")]
    [InlineData("Publish", "base64")]
    [InlineData("Publish", "truncated")]
    public async Task InvalidProtobufOrFraming_EndsInvalidArgument40000_NothingLogged(string method, string broken)
    {
        // Found by the fuzz: the generated marshaller's parser threw past the framework (unary: UNKNOWN and an error
        // logged; Connect: the stream ended OK as if the client had closed it); a Connect frame with a compressed flag
        // of 7 faulted the read loop (the stream ended OK); broken framing on a unary call (a flag, a length, a second
        // message, gzip that does not decompress, gRPC-Web text that is not base64) ended it UNKNOWN with an error logged.
        using var http = new HttpClient();
        var ping = new ClientFrame { Ping = new PingRequest() }.ToByteArray();
        var body = broken switch
        {
            "varint" => Frame([0x0A, 0x7F, 0x41]),
            "utf8" => Frame([0x0A, 0x02, 0xC3, 0x28]),
            "flag" => Frame(ping, flag: 7),
            "length" => Frame(ping, length: 40),
            "two messages" => [.. Frame([]), .. Frame([])],
            "gzip that is not" => Frame([1, 2, 3], flag: 1),
            "truncated" => [0, 0, 0],
            _ => "AAAA!!!="u8.ToArray(),
        };
        var web = broken == "base64";
        using var request = RawCall(method, body, web, text: web);
        if (broken == "gzip that is not")
        {
            request.Headers.TryAddWithoutValidation("grpc-encoding", "gzip");
        }

        Assert.Equal("InvalidArgument 40000", await RunRawAsync(http, request, isWeb: web));
        _host.AssertNoErrorLogged();
    }

    [Fact]
    public async Task UnaryPrefixPastTheReceiveLimit_EndsResourceExhausted41300_NothingLogged()
    {
        using var http = new HttpClient();
        Assert.Equal("ResourceExhausted 41300", await RunRawAsync(http, RawCall("Publish", Frame([0x0A, 0x01, 0x61], length: MaxReceiveBytes + 1), web: false), isWeb: false));
        _host.AssertNoErrorLogged();
    }

    [Theory]
    [InlineData("grpc")]
    [InlineData("grpc gzip")]
    [InlineData("web")]
    [InlineData("web gzip")]
    [InlineData("web text")]
    [InlineData("web text gzip")]
    [InlineData("grpc 900 KiB")]
    [InlineData("web 900 KiB")]
    public async Task UnaryPublishThatPassesTheFramingCheck_IsServedFromTheBodyTheCheckRead(string form)
    {
        // The check leaves a plain body in the request's pipe: the framework (through gRPC-Web's middleware) reads the same
        // bytes. Text and compressed bodies are handed on as the check decoded them: once, not again by the framework.
        var channel = $"framing-{form.Replace(' ', '-')}-{Guid.NewGuid():N}";
        var message = GrpcClients.Publish(channel, "{\"form\":\"" + form + "\"}").ToByteArray();
        if (form.EndsWith("900 KiB", StringComparison.Ordinal))
        {
            // An unknown field makes it larger than HTTP/2's stream window (768 KiB): all of it waits unconsumed in the pipe.
            using var padding = new MemoryStream();
            var output = new CodedOutputStream(padding);
            output.WriteTag(1000, WireFormat.WireType.LengthDelimited);
            output.WriteBytes(ByteString.CopyFrom(new byte[900 * 1024]));
            output.Flush();
            message = [.. message, .. padding.ToArray()];
        }

        var gzip = form.EndsWith("gzip", StringComparison.Ordinal);
        if (gzip)
        {
            using var compressed = new MemoryStream();
            using (var zip = new GZipStream(compressed, CompressionLevel.Fastest))
            {
                zip.Write(message);
            }

            message = compressed.ToArray();
        }

        var web = form.StartsWith("web", StringComparison.Ordinal);
        var text = form.StartsWith("web text", StringComparison.Ordinal);
        var body = Frame(message, flag: gzip ? (byte)1 : (byte)0);
        using var request = RawCall("Publish", text ? Encoding.ASCII.GetBytes(Convert.ToBase64String(body)) : body, web, text);
        if (gzip)
        {
            request.Headers.TryAddWithoutValidation("grpc-encoding", "gzip");
        }

        using var http = new HttpClient();
        Assert.Equal("OK", await RunRawAsync(http, request, isWeb: web));
        using var grpc = GrpcClients.Channel(_host.Server);
        var history = await GrpcClients.Client(grpc).HistoryAsync(new HistoryRequest { Channel = channel }, GrpcClients.Options(GrpcClients.Key(RelayServer.Key)));
        Assert.Equal("{\"form\":\"" + form + "\"}", history.Messages.Single().Data.Json);
        _host.AssertNoErrorLogged();
    }

    [Theory]
    [InlineData("grpc")]
    [InlineData("web")]
    [InlineData("web text")]
    public async Task UnaryGzipBomb_DecompressingPastTheReceiveLimit_EndsResourceExhausted41300_NothingLogged(string form)
    {
        // 16 MiB of zeros gzip to about 16 KiB: far under the limit as sent, 16 times over it once expanded. Refused as
        // it passes the limit, not after expanding all of it; the framework never sees it.
        using var compressed = new MemoryStream();
        using (var zip = new GZipStream(compressed, CompressionLevel.SmallestSize))
        {
            zip.Write(new byte[16 * MaxReceiveBytes]);
        }

        var body = Frame(compressed.ToArray(), flag: 1);
        Assert.True(body.Length < MaxReceiveBytes / 16, $"the bomb is {body.Length} bytes compressed");
        var web = form != "grpc";
        var text = form == "web text";
        using var request = RawCall("Publish", text ? Encoding.ASCII.GetBytes(Convert.ToBase64String(body)) : body, web, text);
        request.Headers.TryAddWithoutValidation("grpc-encoding", "gzip");

        using var http = new HttpClient();
        Assert.Equal("ResourceExhausted 41300", await RunRawAsync(http, request, isWeb: web));
        _host.AssertNoErrorLogged();
    }

    // A raw unary call with the test key: HTTP/2 to the gRPC port, or gRPC-Web (binary or text) over HTTP/1.1 to the HTTP port.
    private HttpRequestMessage RawCall(string method, byte[] body, bool web, bool text = false)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, new Uri(web ? _host.Server.BaseAddress : _host.Server.GrpcAddress, $"relay.v1.Realtime/{method}"))
        {
            Version = web ? HttpVersion.Version11 : HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(body),
        };
        request.Content.Headers.TryAddWithoutValidation("content-type", !web ? "application/grpc" : text ? "application/grpc-web-text" : "application/grpc-web");
        request.Headers.TryAddWithoutValidation("te", "trailers");
        request.Headers.TryAddWithoutValidation("authorization", "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        return request;
    }

    // Sends one raw call and reads its status: "<status> <relay code or framework>", or FAIL.
    private static async Task<string> RunRawAsync(HttpClient http, HttpRequestMessage request, bool isWeb)
    {
        using var sent = request;
        HttpResponseMessage response;
        try
        {
            response = await http.SendAsync(request);
        }
        catch (HttpRequestException ex) when (ex.InnerException is IOException or HttpProtocolException)
        {
            // The server reset the stream (a body past the limit, a protocol error): HTTP/2's answer, not a crash.
            return "stream reset";
        }

        using var answered = response;
        var body = await response.Content.ReadAsByteArrayAsync();
        var status = (int)response.StatusCode;
        // 415 for a content type gRPC does not take, 426 for plain gRPC sent over HTTP/1.1: the framework's refusals.
        if (status is 415 or 426)
        {
            return $"HTTP {status}";
        }

        if (status != 200)
        {
            return $"FAIL HTTP {status}";
        }

        var trailers = isWeb ? WebTrailers(response, body) : Trailers(response);
        if (!trailers.TryGetValue("grpc-status", out var code) || !int.TryParse(code, out var grpcStatus))
        {
            return $"FAIL no grpc-status (body {body.Length} bytes)";
        }

        var message = trailers.GetValueOrDefault("grpc-message") ?? string.Empty;
        var relay = trailers.GetValueOrDefault("relay-error-code");
        var name = ((StatusCode)grpcStatus).ToString();
        if (grpcStatus is (int)StatusCode.Unknown or (int)StatusCode.Internal)
        {
            return $"FAIL {name} {relay} {Uri.UnescapeDataString(message)}";
        }

        if (relay is not null)
        {
            if (!trailers.ContainsKey("grpc-status-details-bin"))
            {
                return $"FAIL {name} {relay} without ErrorInfo";
            }

            return $"{name} {relay}";
        }

        return grpcStatus == 0 ? "OK" : $"{name} (framework)";
    }

    private static Dictionary<string, string> Trailers(HttpResponseMessage response)
    {
        var all = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, values) in response.Headers.Concat(response.TrailingHeaders))
        {
            all[name] = string.Join(",", values);
        }

        return all;
    }

    // gRPC-Web: the status in the headers (trailers-only), or in the body's trailer frame (flag 0x80), base64 in text mode.
    private static Dictionary<string, string> WebTrailers(HttpResponseMessage response, byte[] body)
    {
        var all = Trailers(response);
        if (all.ContainsKey("grpc-status"))
        {
            return all;
        }

        if (response.Content.Headers.ContentType?.MediaType?.Contains("text", StringComparison.Ordinal) == true)
        {
            body = Convert.FromBase64String(Encoding.ASCII.GetString(body));
        }

        var at = 0;
        while (at + 5 <= body.Length)
        {
            var length = (int)BinaryPrimitives.ReadUInt32BigEndian(body.AsSpan(at + 1));
            if ((body[at] & 0x80) != 0)
            {
                foreach (var line in Encoding.ASCII.GetString(body, at + 5, length).Split("\r\n", StringSplitOptions.RemoveEmptyEntries))
                {
                    var colon = line.IndexOf(':', StringComparison.Ordinal);
                    all[line[..colon].Trim()] = line[(colon + 1)..].Trim();
                }
            }

            at += 5 + length;
        }

        return all;
    }

    private static (HttpRequestMessage Request, string Mutation) RawCase(Random random, RelayServer server)
    {
        var method = s_methods[random.Next(s_methods.Length)];
        var messages = new List<byte[]> { ValidMessage(random, method) };
        if (method == "Connect")
        {
            for (var n = random.Next(0, 3); n > 0; n--)
            {
                messages.Add(ValidMessage(random, method));
            }
        }

        var request = new HttpRequestMessage(HttpMethod.Post, new Uri(server.GrpcAddress, $"relay.v1.Realtime/{method}"))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        request.Headers.TryAddWithoutValidation("te", "trailers");
        var contentType = "application/grpc";
        string? encoding = null;
        var (body, mutation) = MutateBody(random, messages, ref contentType, ref encoding, request);
        return (request, $"{method}: {mutation}{Finish(random, request, body, contentType, encoding)}");
    }

    private static (HttpRequestMessage Request, string Mutation) WebCase(Random random, RelayServer server)
    {
        var method = s_methods[random.Next(4)];
        var text = random.Next(2) == 0;
        var request = new HttpRequestMessage(HttpMethod.Post, new Uri(server.BaseAddress, $"relay.v1.Realtime/{method}"));
        var contentType = text ? "application/grpc-web-text" : "application/grpc-web";
        string? encoding = null;
        var (body, mutation) = MutateBody(random, [ValidMessage(random, method)], ref contentType, ref encoding, request);
        if (text)
        {
            var base64 = Convert.ToBase64String(body);
            (base64, var what) = random.Next(5) switch
            {
                0 => (base64 + "!!", ", base64 with junk"),
                1 => (base64.TrimEnd('='), ", base64 unpadded"),
                2 => (base64.Length > 3 ? base64[..^3] : base64, ", base64 cut"),
                3 => (base64 + base64, ", base64 twice"),
                _ => (base64, string.Empty),
            };
            body = Encoding.ASCII.GetBytes(base64);
            mutation += what;
        }

        return (request, $"web {method}: {mutation}{Finish(random, request, body, contentType, encoding)}");
    }

    // The body and its headers, and credentials (said in what it returns).
    private static string Finish(Random random, HttpRequestMessage request, byte[] body, string contentType, string? encoding)
    {
        request.Content = new ByteArrayContent(body);
        request.Content.Headers.TryAddWithoutValidation("content-type", contentType);
        if (encoding is not null)
        {
            request.Headers.TryAddWithoutValidation("grpc-encoding", encoding);
        }

        return Credentials(random, request);
    }

    private static byte[] ValidMessage(Random random, string method) => method switch
    {
        "Publish" => GrpcClients.Publish($"fuzz-{random.Next(3)}", "{\"n\":" + random.Next() + "}", random.Next(3) == 0 ? "id-" + random.Next(5) : null).ToByteArray(),
        "History" => new HistoryRequest { Channel = $"fuzz-{random.Next(3)}", Limit = random.Next(1, 50) }.ToByteArray(),
        "Presence" => new PresenceRequest { Channel = $"fuzz-{random.Next(3)}" }.ToByteArray(),
        "Channels" => new ChannelsRequest { Prefix = random.Next(2) == 0 ? "" : "fuzz" }.ToByteArray(),
        _ => (random.Next(4) switch
        {
            0 => new ClientFrame { Ref = "r", Ping = new PingRequest() },
            1 => new ClientFrame { Ref = "s", Subscribe = new SubscribeRequest { Channel = $"fuzz-{random.Next(3)}" } },
            2 => new ClientFrame { Ref = "p", Publish = GrpcClients.Publish($"fuzz-{random.Next(3)}", "1") },
            _ => new ClientFrame { Ref = "h", History = new HistoryRequest { Channel = "fuzz-0" } },
        }).ToByteArray(),
    };

    private static byte[] Frame(byte[] message, byte flag = 0, uint? length = null)
    {
        var frame = new byte[5 + message.Length];
        frame[0] = flag;
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), length ?? (uint)message.Length);
        message.CopyTo(frame, 5);
        return frame;
    }


    private static (byte[] Body, string Mutation) MutateBody(Random random, List<byte[]> messages, ref string contentType, ref string? encoding, HttpRequestMessage request)
    {
        var at = random.Next(messages.Count);
        var message = messages[at];
        string what;
        byte[]? frame = null;
        switch (random.Next(18))
        {
            case 0:
                what = "none";
                break;
            case 1:
                var length = random.Next(3) switch { 0 => (uint)message.Length + (uint)random.Next(1, 100), 1 => (uint)Math.Max(0, message.Length - random.Next(1, 5)), _ => uint.MaxValue - (uint)random.Next(100) };
                frame = Frame(message, length: length);
                what = $"length {length} for {message.Length} bytes";
                break;
            case 2:
                frame = Frame(message, flag: 1);
                what = "compressed flag, no grpc-encoding";
                break;
            case 3:
                frame = Frame(message, flag: 1);
                encoding = random.Next(2) == 0 ? "gzip" : "snappy";
                what = $"compressed flag, grpc-encoding {encoding}, not compressed";
                break;
            case 4:
                using (var compressed = new MemoryStream())
                {
                    using (var gzip = new GZipStream(compressed, CompressionLevel.Fastest))
                    {
                        gzip.Write(message);
                    }

                    frame = Frame(compressed.ToArray(), flag: 1);
                }

                encoding = "gzip";
                what = "gzip, as it should be";
                break;
            case 5:
                frame = Frame(message, flag: (byte)random.Next(2, 256));
                what = $"flag {frame[0]}";
                break;
            case 6:
                var whole = Frame(message);
                frame = whole[..random.Next(0, whole.Length)];
                what = $"cut at {frame.Length} of {whole.Length}";
                break;
            case 7:
                var flipped = (byte[])message.Clone();
                for (var n = random.Next(1, 4); n > 0 && flipped.Length > 0; n--)
                {
                    var bit = random.Next(flipped.Length * 8);
                    flipped[bit / 8] ^= (byte)(1 << (bit % 8));
                }

                frame = Frame(flipped);
                what = "bits flipped in the message";
                break;
            case 8:
                byte[][] invalid = [[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], [0x0A, 0x7F, 0x41], [0x0F], [0x0A, 0x05, 0x0A, 0x10], [0x12, 0x02, 0x08], new byte[random.Next(1, 64)]];
                var junk = random.Next(3) == 0 ? RandomBytes(random, random.Next(1, 200)) : invalid[random.Next(invalid.Length)];
                frame = Frame(junk);
                what = $"invalid protobuf {Convert.ToHexString(junk[..Math.Min(16, junk.Length)])}";
                break;
            case 9:
                // A string field (field 1 of every request but ClientFrame's, whose field 1 is ref) holding invalid UTF-8.
                frame = Frame([0x0A, 0x03, 0x61, 0xC3, 0x28, .. message]);
                what = "invalid UTF-8 in field 1";
                break;
            case 10:
                frame = Frame([.. message, 0xF8, 0x07, 0x01, 0xFA, 0x07, 0x03, 0x61, 0x62, 0x63, 0x85, 0x08, 1, 2, 3, 4]);
                what = "unknown fields (varint, bytes, fixed32)";
                break;
            case 11:
                frame = [.. Frame(message), .. Frame(message)];
                what = "two messages";
                break;
            case 12:
                frame = Frame(new byte[MaxReceiveBytes + random.Next(1, 1000)]);
                what = "past the receive limit";
                break;
            case 13:
                contentType = new[] { "application/json", "text/plain", "application/grpc+json", "application/grpc-web", "", "application/grpcx" }[random.Next(6)];
                what = $"content-type '{contentType}'";
                break;
            case 14:
                request.Headers.Remove("te");
                what = "no te: trailers";
                break;
            case 15:
                frame = [];
                what = "an empty body";
                break;
            case 16:
                request.Headers.TryAddWithoutValidation("grpc-timeout", new[] { "1n", "0S", "99999999H", "x", "-1m" }[random.Next(5)]);
                what = "grpc-timeout " + string.Join(",", request.Headers.GetValues("grpc-timeout"));
                break;
            default:
                encoding = new[] { "identity", "gzip", "deflate", "br", "x" }[random.Next(5)];
                what = $"grpc-encoding {encoding}, flag 0";
                break;
        }

        var frames = messages.Select(m => Frame(m)).ToList();
        if (frame is not null)
        {
            frames[at] = frame;

            // Whatever follows a frame cut short or mislabelled is part of the mutation; keep it as it falls.
        }

        return ([.. frames.SelectMany(static f => f)], what);
    }

    private static byte[] RandomBytes(Random random, int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }

    private static string Credentials(Random random, HttpRequestMessage request)
    {
        static string Basic(string key) => "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes(key));
        var (name, value, what) = random.Next(12) switch
        {
            0 => ("authorization", Basic(RelayServer.SubscribeOnlyKey), ", subscribe-only key"),
            1 => ("authorization", Basic(RelayServer.OtherAppKey), ", another app's key"),
            2 => ("authorization", Basic(RelayServer.Key[..^1] + "x"), ", a wrong secret"),
            3 => ("authorization", "Bearer not.a.token", ", a garbage token"),
            4 => ("authorization", "Basic !!!", ", bad base64"),
            5 => ("relay-key", "test.root:" + new string('s', 16_000), ", a 16 KB relay-key"),
            6 => ("relay-token", "eyJhbGciOiJub25lIn0.e30.", ", alg none"),
            7 => ("authorization", "", ", empty authorization"),
            8 => (null, null, ", no credentials"),
            _ => ("authorization", Basic(RelayServer.Key), string.Empty),
        };
        if (name is not null)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        if (random.Next(10) == 0)
        {
            request.Headers.TryAddWithoutValidation("relay-client-id", random.Next(2) == 0 ? new string('c', 500) : "\"quoted\" %00");
            what += ", odd client id";
        }

        return what;
    }

    // A Connect stream with requests in any order; each is answered by its ref (the reply or an error frame with a 4xxxx code).
    private static async Task StreamAsync(Relay.Grpc.V1.Realtime.RealtimeClient client, Random random, int index, ConcurrentDictionary<string, int> tally, ConcurrentQueue<string> failures)
    {
        var metadata = GrpcClients.Key(RelayServer.Key, random.Next(2) == 0 ? $"fuzzer-{index}" : null);
        await using var stream = await GrpcStream.ConnectAsync(client, metadata);
        for (var i = 0; i < RequestsPerStream; i++)
        {
            var (frame, what) = StreamRequest(random);
            ServerFrame reply;
            try
            {
                reply = await stream.RequestAsync(frame);
            }
            catch (Exception ex) when (ex is OperationCanceledException or System.Threading.Channels.ChannelClosedException or RpcException or InvalidOperationException)
            {
                failures.Enqueue($"stream {index} request {i} ({what}): no reply ({ex.GetType().Name}; the call ended {stream.Ended?.Status})");
                return;
            }

            var outcome = reply.FrameCase == ServerFrame.FrameOneofCase.Error ? $"stream error {reply.Error.Code}" : $"stream {reply.FrameCase}";
            tally.AddOrUpdate(outcome, 1, static (_, n) => n + 1);
            if (reply.FrameCase == ServerFrame.FrameOneofCase.Error && reply.Error.Code is < 40000 or >= 50000)
            {
                failures.Enqueue($"stream {index} request {i} ({what}): error {reply.Error.Code} {reply.Error.Message}");
            }
        }

        Assert.Equal(ServerFrame.FrameOneofCase.Pong, (await stream.RequestAsync(new ClientFrame { Ping = new PingRequest() })).FrameCase);
    }

    private static (ClientFrame Frame, string What) StreamRequest(Random random)
    {
        string[] channels = ["fuzz-0", "fuzz-1", "chat:room", "fuzz-*", "fuzz-#", "", new string('c', 300), "a b", "bystander", "presence-x", "caf\u00e9", "x:y:z"];
        var channel = channels[random.Next(channels.Length)];
        Data? data = random.Next(6) switch
        {
            0 => null,
            1 => new Data { Json = "{\"a\":" },
            2 => new Data { Binary = ByteString.CopyFrom(RandomBytes(random, random.Next(0, 100))) },
            3 => new Data { Json = "\"" + new string('x', 70_000) + "\"" },
            4 => new Data { Json = new string('[', 100) + new string(']', 100) },
            _ => new Data { Json = "{\"n\":1}" },
        };
        switch (random.Next(10))
        {
            case 0:
                return (new ClientFrame { Subscribe = new SubscribeRequest { Channel = channel } }, $"subscribe {channel}");
            case 1:
                var subscribe = new SubscribeRequest { Channel = channel };
                if (random.Next(2) == 0)
                {
                    subscribe.Since = new Since { Epoch = random.Next(2) == 0 ? "bogus" : "", Seq = random.Next(-5, 1000) };
                }

                if (random.Next(2) == 0)
                {
                    subscribe.Rewind = random.Next(-2, 2000);
                }

                return (new ClientFrame { Subscribe = subscribe }, $"subscribe {channel} since/rewind");
            case 2:
                return (new ClientFrame { Unsubscribe = new UnsubscribeRequest { Channel = channel } }, $"unsubscribe {channel}");
            case 3:
                var publish = new PublishRequest { Channel = channel };
                for (var n = random.Next(0, 3); n > 0; n--)
                {
                    publish.Messages.Add(new PublishMessage { Data = data, Name = random.Next(5) == 0 ? new string('n', 300) : "e", Id = random.Next(5) == 0 ? new string('i', 65) : "" });
                }

                return (new ClientFrame { Publish = publish }, $"publish {channel} ({publish.Messages.Count})");
            case 4:
                var action = new[] { "enter", "update", "leave", "get", "", "dance" }[random.Next(6)];
                return (new ClientFrame { Presence = new PresenceRequest { Channel = channel, Action = action, Data = data } }, $"presence {action} {channel}");
            case 5:
                var history = new HistoryRequest { Channel = channel };
                if (random.Next(2) == 0)
                {
                    history.Limit = random.Next(-5, 2000);
                }

                if (random.Next(2) == 0)
                {
                    history.Before = random.Next(-5, 100);
                }

                return (new ClientFrame { History = history }, $"history {channel}");
            case 6:
                var token = new[] { "", "not.a.token", "eyJhbGciOiJub25lIn0.e30.", TestTokens.ForRootKey("fuzz", TimeSpan.FromMinutes(10)) }[random.Next(4)];
                return (new ClientFrame { Auth = new AuthRequest { Token = token } }, $"auth '{token[..Math.Min(12, token.Length)]}'");
            case 7:
                return (new ClientFrame(), "an empty frame");
            default:
                return (new ClientFrame { Ping = new PingRequest() }, "ping");
        }
    }
}

using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Relay.Client;
using Relay.Testing;

namespace Relay.Services.Tests.Pusher;

/// <summary>
/// The HTTP fallback sessions with raw HTTP, as pusher-js's XMLHttpRequest sends it (<c>POST …/xhr</c>,
/// <c>…/xhr_streaming</c>, <c>…/xhr_send</c> with a JSON array of frames): bad input, the idle timeout, the send
/// budget of a client that never polls, streaming flushed per frame, random <c>xhr_send</c> bodies; each on a server of
/// its own settings.
/// </summary>
public sealed class PusherHttpSessionTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static string NewSession() => "pusher/app/test.root/" + Random.Shared.Next(1000) + "/" + Guid.NewGuid().ToString("N")[..8];

    private static async Task<(HttpStatusCode Status, string Body)> PostAsync(HttpClient http, string path, string? body = null)
    {
        using var content = new StringContent(body ?? string.Empty, Encoding.UTF8, "application/json");
        using var response = await http.PostAsync(new Uri(path, UriKind.Relative), content).WaitAsync(Timeout);
        return (response.StatusCode, await response.Content.ReadAsStringAsync().WaitAsync(Timeout));
    }

    private static Task<(HttpStatusCode Status, string Body)> SendAsync(HttpClient http, string session, params string[] frames) =>
        PostAsync(http, session + "/xhr_send", JsonSerializer.Serialize(frames));

    /// <summary>Polls until a poll's answer contains <paramref name="text"/>; every answer so far.</summary>
    private static async Task<string> PollUntilAsync(HttpClient http, string session, string text)
    {
        var seen = new StringBuilder();
        using var cancel = new CancellationTokenSource(Timeout);
        while (!seen.ToString().Contains(text, StringComparison.Ordinal))
        {
            Assert.False(cancel.IsCancellationRequested, $"no poll answered '{text}' within {Timeout}; answers: {seen}");
            var (status, body) = await PostAsync(http, session + "/xhr");
            Assert.True(status == HttpStatusCode.OK, $"{status}: {body}");
            seen.Append(body);
        }

        return seen.ToString();
    }

    /// <summary>Posts an empty heartbeat until the session is unknown (404), failing with <paramref name="failure"/> after the timeout.</summary>
    private static async Task GoneAsync(HttpClient http, string session, string failure)
    {
        using var cancel = new CancellationTokenSource(Timeout);
        while ((await SendAsync(http, session)).Status != HttpStatusCode.NotFound)
        {
            Assert.False(cancel.IsCancellationRequested, failure);
            await Task.Delay(200);
        }
    }

    private static async Task<string> OpenPolledAsync(HttpClient http)
    {
        var session = NewSession();
        var (status, body) = await PostAsync(http, session + "/xhr?protocol=7&client=js&version=8.4.0");
        Assert.Equal((HttpStatusCode.OK, "o\n"), (status, body));
        await PollUntilAsync(http, session, "pusher:connection_established");
        return session;
    }

    private static string Subscribe(string channel) => JsonSerializer.Serialize(new { @event = "pusher:subscribe", data = new { channel } });

    [Fact]
    public async Task BadInput_UnknownSessionBrokenBodyOversizeAndRefusedOpen_ClearErrorsAndTheSessionGoesOn()
    {
        await using var server = await PusherServerFixture.StartServerAsync();
        using var http = new HttpClient { BaseAddress = server.BaseAddress };

        var unknown = await SendAsync(http, NewSession(), Subscribe("news"));
        Assert.Equal(HttpStatusCode.NotFound, unknown.Status);
        Assert.Contains("xhr_streaming or xhr", unknown.Body, StringComparison.Ordinal);

        var session = await OpenPolledAsync(http);
        foreach (var broken in new[] { "not json", "{\"event\":\"pusher:ping\"}", "[1,2]", "[\"\\ud800\"]", string.Empty })
        {
            var (status, body) = await PostAsync(http, session + "/xhr_send", broken);
            Assert.True(status == HttpStatusCode.BadRequest, $"{broken}: {status} {body}");
            Assert.Contains("JSON array of strings", body, StringComparison.Ordinal);
        }

        var oversize = await SendAsync(http, session, new string('x', 200_000));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, oversize.Status);

        // A frame that is not a Pusher event is the protocol's error, as on a WebSocket; then the session serves on.
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(http, session, "{}")).Status);
        await PollUntilAsync(http, session, "malformed frame");
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(http, session, Subscribe("news"))).Status);
        await PollUntilAsync(http, session, "pusher_internal:subscription_succeeded");

        // Opening refused as on a WebSocket: the error, then the close with its code.
        var (_, noProtocol) = await PostAsync(http, NewSession() + "/xhr");
        Assert.StartsWith("o\na[", noProtocol, StringComparison.Ordinal);
        Assert.Contains("c[4008,", noProtocol, StringComparison.Ordinal);
        var (_, badKey) = await PostAsync(http, "pusher/app/test.nope/1/abc/xhr_streaming?protocol=7");
        Assert.Contains("c[4001,", badKey, StringComparison.Ordinal);
    }

    [Fact]
    public async Task IdleSession_NoStreamOrPollForTheTimeout_EndsAndGivesBackItsConnectionCount()
    {
        await using var server = await PusherServerFixture.StartServerAsync(("Relay:Pusher:HttpSessionTimeoutSeconds", "1"), ("Relay:Pusher:Apps:test:MaxConnections", "1"));
        using var http = new HttpClient { BaseAddress = server.BaseAddress };

        var first = await OpenPolledAsync(http);

        // Sessions count as the app's connections: a second one is over the quota.
        var (_, refused) = await PostAsync(http, NewSession() + "/xhr?protocol=7");
        Assert.Contains("c[4004,", refused, StringComparison.Ordinal);

        // Posting is not polling: the session with no poll open ends after the timeout (the node's sweep, once a second).
        await GoneAsync(http, first, "the idle session did not end");

        var (status, opened) = await PostAsync(http, NewSession() + "/xhr?protocol=7");
        Assert.Equal((HttpStatusCode.OK, "o\n"), (status, opened));
    }

    [Fact]
    public async Task Sessions_CountAsTheirAddresssConnections_OneClientCannotOpenThemWithoutBound()
    {
        // A session lives on with no socket open: without counting it, one keep-alive connection could open sessions
        // without end (each held for the idle timeout). Here 4 per address, of which this client's socket holds one.
        await using var server = await PusherServerFixture.StartServerAsync(("Relay:Pusher:HttpSessionTimeoutSeconds", "1"), ("Relay:Ingress:MaxConnectionsPerIp", "4"));
        using var http = new HttpClient { BaseAddress = server.BaseAddress };

        var opened = 0;
        string refused = "";
        for (var i = 0; i < 10 && refused.Length == 0; i++)
        {
            var (status, body) = await PostAsync(http, NewSession() + "/xhr?protocol=7");
            Assert.Equal(HttpStatusCode.OK, status);
            if (body == "o\n")
            {
                opened++;
            }
            else
            {
                refused = body;
            }
        }

        Assert.InRange(opened, 1, 3);
        Assert.Contains("c[4100,", refused, StringComparison.Ordinal);
        Assert.Contains("MaxConnectionsPerIp", refused, StringComparison.Ordinal);

        // The sessions end after the idle timeout and give their places back.
        using var cancel = new CancellationTokenSource(Timeout);
        while ((await PostAsync(http, NewSession() + "/xhr?protocol=7")).Body != "o\n")
        {
            Assert.False(cancel.IsCancellationRequested, "the idle sessions never gave their address's places back");
            await Task.Delay(200);
        }
    }

    [Fact]
    public async Task SendBudget_ClientThatNeverPolls_IsCutAsASlowConsumerNotBuffered()
    {
        // The session is left without a poll while 4 MB go out: on a loaded machine that outlasts the 5 s default.
        await using var server = await PusherServerFixture.StartServerAsync(("Relay:Ingress:SendQueueBytes", "2097152"), ("Relay:Pusher:HttpSessionTimeoutSeconds", "120"));
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        var session = await OpenPolledAsync(http);
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(http, session, Subscribe("firehose"))).Status);
        await PollUntilAsync(http, session, "pusher_internal:subscription_succeeded");

        // 4 MB published while the client does not poll: past the 2 MiB budget it is cut (4100), nothing more is kept.
        await using var publisher = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        var data = new string('p', 50_000);
        for (var i = 0; i < 80; i++)
        {
            await publisher.PublishAsync("firehose", new { i, data }).WaitAsync(Timeout);
        }

        var answer = await PollUntilAsync(http, session, "c[");
        Assert.Contains("c[4100,", answer, StringComparison.Ordinal);
        Assert.DoesNotContain("pppppppp", answer, StringComparison.Ordinal);

        await GoneAsync(http, session, "the cut session was not removed");
    }

    [Fact]
    public async Task Streaming_EachFrameFlushedAsSent_HeartbeatWhenQuiet()
    {
        await using var server = await PusherServerFixture.StartServerAsync(("Relay:Pusher:HttpPollSeconds", "1"));
        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = Timeout };
        var session = NewSession();
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(session + "/xhr_streaming?protocol=7", UriKind.Relative)) { Content = new StringContent(string.Empty) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).WaitAsync(Timeout);
        Assert.Equal("*", response.Headers.GetValues("Access-Control-Allow-Origin").Single());
        using var stream = new StreamReader(await response.Content.ReadAsStreamAsync().WaitAsync(Timeout));

        async Task<string> LineAsync() => await stream.ReadLineAsync().WaitAsync(Timeout) ?? throw new EndOfStreamException("the stream ended");

        Assert.Equal("o", await LineAsync());
        var established = await LineAsync();
        Assert.StartsWith("a[", established, StringComparison.Ordinal);
        var frame = JsonDocument.Parse(JsonDocument.Parse(established[1..]).RootElement[0].GetString()!).RootElement;
        Assert.Equal("pusher:connection_established", frame.GetProperty("event").GetString());

        // Quiet: a heartbeat within the poll interval; then a frame sent now arrives on the open response.
        Assert.Equal("h", await LineAsync());
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(http, session, Subscribe("live"))).Status);
        string line;
        do
        {
            line = await LineAsync();
        }
        while (line == "h");

        Assert.Contains("pusher_internal:subscription_succeeded", line, StringComparison.Ordinal);
    }

    /// <summary>
    /// A stream stops at the first line end past pusher-js's 256 K characters (where pusher-js aborts it and opens the
    /// next) and writes nothing more; the next stream of the session goes on with the next event: none lost, none twice.
    /// </summary>
    [Fact]
    public async Task Streaming_PastPusherJsResponseLimit_StopsAtThatLineEnd_NextStreamGoesOnWithTheNextEvent()
    {
        const int Events = 600;
        await using var server = await PusherServerFixture.StartServerAsync(("Relay:Ingress:PublishRatePerSecond", "5000"));
        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = System.Threading.Timeout.InfiniteTimeSpan };
        var session = NewSession();

        async Task<StreamReader> StreamAsync()
        {
            var request = new HttpRequestMessage(HttpMethod.Post, new Uri(session + "/xhr_streaming?protocol=7", UriKind.Relative)) { Content = new StringContent(string.Empty) };
            var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).WaitAsync(Timeout);
            return new StreamReader(await response.Content.ReadAsStreamAsync().WaitAsync(Timeout));
        }

        var received = new List<int>();
        void Take(string line)
        {
            if (line.StartsWith("a[", StringComparison.Ordinal))
            {
                foreach (var frame in JsonDocument.Parse(line[1..]).RootElement.EnumerateArray())
                {
                    var data = JsonDocument.Parse(frame.GetString()!).RootElement.GetProperty("data").GetString()!;
                    if (data.StartsWith('#'))
                    {
                        received.Add(int.Parse(data.AsSpan(1, data.IndexOf(' ', StringComparison.Ordinal) - 1), CultureInfo.InvariantCulture));
                    }
                }
            }
        }

        using var first = await StreamAsync();
        var chars = 0L;
        async Task<string> LineAsync(StreamReader stream)
        {
            var line = await stream.ReadLineAsync().WaitAsync(Timeout) ?? throw new EndOfStreamException("the stream ended");
            chars += line.Length + 1;
            return line;
        }

        Assert.Equal("o", await LineAsync(first));
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(http, session, Subscribe("bulk"))).Status);
        while (!(await LineAsync(first)).Contains("subscription_succeeded", StringComparison.Ordinal))
        {
        }

        // 600 events of ~700 characters (text beyond ASCII, escaped in the frame and again in the line): past 256 K on the first stream.
        await using var publisher = await RelayClient.ConnectAsync(new RelayClientOptions { Endpoint = server.RealtimeUri, Key = RelayServer.Key }).WaitAsync(Timeout);
        for (var i = 1; i <= Events; i++)
        {
            await publisher.PublishAsync("bulk", $"#{i} " + new string('ü', 100)).WaitAsync(Timeout);
        }

        while (chars <= 256 * 1024)
        {
            Take(await LineAsync(first));
        }

        Assert.InRange(received.Count, 1, Events - 1);
        var held = first.ReadLineAsync();
        if (await Task.WhenAny(held, Task.Delay(TimeSpan.FromSeconds(2))) == held)
        {
            Assert.Fail($"the stream wrote past pusher-js's limit ({chars} characters): {await held}");
        }

        // pusher-js opens the next stream (the first one is replaced: it ends without another line).
        chars = 0;
        using var second = await StreamAsync();
        Assert.Null(await held.WaitAsync(Timeout));
        while (received.Count < Events)
        {
            Take(await LineAsync(second));
        }

        Assert.Equal(Enumerable.Range(1, Events), received);
    }

    [Fact]
    public async Task XhrSendFuzz_RandomBodies_Get204Or400Or413_NothingLoggedAsAnError_AndTheSessionServesOn()
    {
        // 400 posts with no poll open: on a loaded machine they outlast the session's 5 s default without a reader.
        await using var host = await Hostile.HostileServer.StartAsync(PusherServerFixture.Settings(("Relay:Pusher:HttpSessionTimeoutSeconds", "120")));
        using var http = new HttpClient { BaseAddress = host.Server.BaseAddress };
        var session = await OpenPolledAsync(http);
        var random = new Random(20261206);
        var tally = new SortedDictionary<int, int>();
        for (var i = 0; i < 400; i++)
        {
            using var content = new ByteArrayContent(FuzzBody(random));
            using var response = await http.PostAsync(new Uri(session + "/xhr_send", UriKind.Relative), content).WaitAsync(Timeout);
            var status = (int)response.StatusCode;
            Assert.True(status is 204 or 400 or 413, $"case {i}: {status} {await response.Content.ReadAsStringAsync()}");
            tally[status] = tally.GetValueOrDefault(status) + 1;
        }

        Assert.Equal(3, tally.Count);
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(http, session, """{"event":"pusher:ping","data":{}}""")).Status);
        await PollUntilAsync(http, session, "pusher:pong");
        host.AssertNoErrorLogged();
    }

    /// <summary>An <c>xhr_send</c> body: frames pusher-js could send, broken JSON, wrong shapes, invalid text, too large.</summary>
    private static byte[] FuzzBody(Random random)
    {
        string Frame() => random.Next(6) switch
        {
            0 => Subscribe(random.Next(3) == 0 ? "private-" + random.Next(9) : "fuzz-" + random.Next(9)),
            1 => """{"event":"pusher:ping","data":{}}""",
            2 => """{"event":"client-x","channel":"private-1","data":{"a":1}}""",
            3 => """{"event":"pusher:unsubscribe","data":{"channel":"fuzz-1"}}""",
            4 => "{\"event\":" + random.Next(),
            _ => new string('z', random.Next(1, 50)),
        };

        var frames = Enumerable.Range(0, random.Next(0, 4)).Select(_ => Frame()).ToArray();
        var valid = JsonSerializer.Serialize(frames);
        return random.Next(8) switch
        {
            0 => Encoding.UTF8.GetBytes(valid[..random.Next(valid.Length)]),
            1 => [.. Encoding.UTF8.GetBytes(valid[..^1]), 0xC3, 0x28, (byte)']'],
            2 => Encoding.UTF8.GetBytes(random.Next(2) == 0 ? "[\"\\udc00\"]" : "[[\"a\"],{}]"),
            3 => Encoding.UTF8.GetBytes("[\"x\"," + random.Next() + ",null,true]"),
            4 => Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new[] { new string('q', random.Next(20_000, 120_000)) })),
            _ => Encoding.UTF8.GetBytes(valid),
        };
    }
}

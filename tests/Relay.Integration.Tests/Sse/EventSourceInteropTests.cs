using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Relay.Testing;

namespace Relay.Integration.Tests.Sse;

/// <summary>The npm <c>eventsource</c> package (a client nobody here wrote) reads Relay's SSE stream and resumes it.</summary>
public sealed class EventSourceInteropTests : IAsyncLifetime
{
    private RelayServer _server = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        _server = await RelayServer.StartAsync();
        _http = new HttpClient { BaseAddress = _server.BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _server.DisposeAsync();
    }

    private async Task PublishAsync(string channel, int n)
    {
        using var response = await _http.PostAsync($"v1/channels/{channel}/messages", new StringContent($$"""{"data":{{n}}}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
    }

    private static async Task WaitForOpenAsync(System.Diagnostics.Process process)
    {
        var line = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(15));
        Assert.Equal("open", JsonDocument.Parse(line!).RootElement.GetProperty("event").GetString());
    }

    private static async Task<List<JsonElement>> ReadEventsAsync(System.Diagnostics.Process process)
    {
        var rest = await process.StandardOutput.ReadToEndAsync().WaitAsync(TimeSpan.FromSeconds(30));
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        var events = rest.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(static l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        Assert.True(process.ExitCode == 0, "sse-client exited " + process.ExitCode + ": " + string.Join(" | ", events.Select(static e => e.GetRawText())) + await process.StandardError.ReadToEndAsync());
        return events;
    }

    [Fact]
    public async Task EventSource_ReceivesMessages_AndResumesAfterADroppedConnectionExactlyOnceInOrder()
    {
        var url = $"{_server.BaseAddress}v1/sse?channel=es:a&channel=es:b&key={Uri.EscapeDataString(RelayServer.Key)}";

        using var first = NodeScript.Start("sse-client.cjs", url, "2");
        await WaitForOpenAsync(first);
        await PublishAsync("es:a", 1);
        await PublishAsync("es:b", 2);
        var firstEvents = await ReadEventsAsync(first);
        Assert.Equal([1, 2], firstEvents.Select(static e => e.GetProperty("data").GetProperty("data").GetInt32()));
        var lastId = firstEvents[^1].GetProperty("id").GetString()!;

        // The first client has gone; these are missed and must come back on resume.
        await PublishAsync("es:a", 3);
        await PublishAsync("es:b", 4);

        using var resumed = NodeScript.Start("sse-client.cjs", url, "3", lastId);
        await WaitForOpenAsync(resumed);
        await PublishAsync("es:a", 5);
        var resumedEvents = await ReadEventsAsync(resumed);
        var data = resumedEvents.Select(static e => e.GetProperty("data").GetProperty("data").GetInt32()).ToList();
        Assert.Equal([3, 4, 5], data);
        Assert.Equal(["es:a", "es:b", "es:a"], resumedEvents.Select(static e => e.GetProperty("data").GetProperty("channel").GetString()));
    }

    [Fact]
    public async Task EventSource_ReceivesPayloadsWithLineBreaksBetweenTokens_AsWholeJson()
    {
        var url = $"{_server.BaseAddress}v1/sse?channel=es:spaced&key={Uri.EscapeDataString(RelayServer.Key)}";
        using var client = NodeScript.Start("sse-client.cjs", url, "4");
        await WaitForOpenAsync(client);

        // Blank lines (LF, CRLF, CR) between tokens, over HTTP and over the WebSocket, one at a time so seq follows the order here.
        using (var response = await _http.PostAsync("v1/channels/es:spaced/messages", new StringContent("{\"data\":{\"n\":\n\n1}}", Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        }

        using (var response = await _http.PostAsync("v1/channels/es:spaced/messages", new StringContent("[{\"data\":{\"n\":\r\n\r\n2}}]", Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        }

        await using var publisher = await TestSocket.ConnectAsync(_server.RealtimeUriWithKey(RelayServer.Key));
        await publisher.SendTextAsync("{\"type\":\"publish\",\"ref\":1,\"channel\":\"es:spaced\",\"data\":{\"n\":\r\r3,\"s\":\"a\\n\\nb\"}}");
        Assert.Equal("ok", (await publisher.ReceiveAsync()).GetProperty("type").GetString());
        await publisher.SendTextAsync("[{\"type\":\"publish\",\"ref\":2,\"channel\":\"es:spaced\",\"data\":[\n4\n]}]");
        Assert.Equal("ok", (await publisher.ReceiveAsync()).GetProperty("type").GetString());

        var data = (await ReadEventsAsync(client)).Where(static e => e.GetProperty("event").GetString() == "message")
            .Select(static e => e.GetProperty("data").GetProperty("data")).ToList();
        Assert.Equal(4, data.Count);
        Assert.Equal([1, 2, 3], data.Take(3).Select(static d => d.GetProperty("n").GetInt32()));
        Assert.Equal("a\n\nb", data[2].GetProperty("s").GetString());
        Assert.Equal(4, data[3][0].GetInt32());
    }
}

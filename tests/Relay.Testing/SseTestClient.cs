using System.Net;
using System.Text;
using System.Text.Json;

namespace Relay.Testing;

/// <summary>One server-sent event as read off the wire.</summary>
public sealed record SseEvent(string? Event, string? Id, string? Data, string? Comment)
{
    /// <summary>The data parsed as JSON.</summary>
    public JsonElement Json => JsonDocument.Parse(Data ?? "null").RootElement.Clone();
}

/// <summary>A minimal text/event-stream reader over a real HTTP connection (the spec's framing: fields, blank line ends an event).</summary>
public sealed class SseTestClient : IAsyncDisposable
{
    private readonly HttpClient _http;
    private readonly HttpResponseMessage _response;
    private readonly StreamReader _reader;

    private SseTestClient(HttpClient http, HttpResponseMessage response, StreamReader reader)
    {
        _http = http;
        _response = response;
        _reader = reader;
    }

    /// <summary>The response status.</summary>
    public HttpStatusCode Status => _response.StatusCode;

    /// <summary>The response content type.</summary>
    public string? ContentType => _response.Content.Headers.ContentType?.MediaType;

    /// <summary>Opens a stream; a non-200 answer is returned as is (read its body with <see cref="ReadBodyAsync"/>). <paramref name="handler"/> (owned from then on) may check a test server's certificate.</summary>
    public static async Task<SseTestClient> OpenAsync(Uri uri, string? lastEventId = null, HttpMessageHandler? handler = null)
    {
        var http = new HttpClient(handler ?? new HttpClientHandler()) { Timeout = Timeout.InfiniteTimeSpan };
        using var request = new HttpRequestMessage(HttpMethod.Get, uri);
        request.Headers.Accept.ParseAdd("text/event-stream");
        if (lastEventId is not null)
        {
            request.Headers.Add("Last-Event-ID", lastEventId);
        }

        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead).WaitAsync(TestSocket.DefaultTimeout).ConfigureAwait(false);
        var stream = await response.Content.ReadAsStreamAsync().ConfigureAwait(false);
        return new SseTestClient(http, response, new StreamReader(stream, Encoding.UTF8));
    }

    /// <summary>The whole body of a refused request.</summary>
    public Task<string> ReadBodyAsync() => _reader.ReadToEndAsync().WaitAsync(TestSocket.DefaultTimeout);

    /// <summary>Reads the next event or comment block.</summary>
    public async Task<SseEvent> ReadAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TestSocket.DefaultTimeout);
        string? name = null, id = null, comment = null;
        StringBuilder? data = null;
        while (true)
        {
            var line = await _reader.ReadLineAsync(cts.Token).ConfigureAwait(false) ?? throw new EndOfStreamException("the server ended the stream");
            if (line.Length == 0)
            {
                if (name is null && id is null && data is null && comment is null)
                {
                    continue;
                }

                return new SseEvent(name, id, data?.ToString(), comment);
            }

            if (line[0] == ':')
            {
                comment = line[1..].Trim();
                continue;
            }

            var colon = line.IndexOf(':', StringComparison.Ordinal);
            var field = colon < 0 ? line : line[..colon];
            var value = colon < 0 ? string.Empty : line[(colon + 1)..].TrimStart(' ');
            switch (field)
            {
                case "event": name = value; break;
                case "id": id = value; break;
                case "data": (data ??= new StringBuilder()).Append(data.Length > 0 ? "\n" : string.Empty).Append(value); break;
                default: break;
            }
        }
    }

    /// <summary>Reads until an event named <paramref name="name"/> arrives.</summary>
    public async Task<SseEvent> ReadEventAsync(string name = "message", TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TestSocket.DefaultTimeout);
        while (true)
        {
            var next = await ReadAsync(deadline - DateTime.UtcNow).ConfigureAwait(false);
            if (next.Event == name)
            {
                return next;
            }
        }
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        _reader.Dispose();
        _response.Dispose();
        _http.Dispose();
        return ValueTask.CompletedTask;
    }
}

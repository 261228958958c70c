using System.Buffers;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Relay.Auth.Verification;

namespace Relay.Pusher;

/// <summary>
/// One receiver of an app's Pusher webhooks: a bounded queue and one sender, so its events go in the order they
/// happened. The sender takes everything queued (up to <see cref="MaxBatch"/> events) into one POST
/// <c>{"time_ms":…,"events":[…]}</c> signed as Pusher signs (<c>X-Pusher-Key</c>, <c>X-Pusher-Signature</c> = hex
/// HMAC-SHA256 of the body with the key's secret); a batch that is not taken (no 2xx, no answer, no connection) is
/// sent again 1 s later, doubling up to 30 s, up to <c>Relay:Pusher:WebhookMaxAttempts</c> tries, then logged as a dead
/// letter. Adding never waits: a full queue drops the new event (logged at most every 10 s).
/// </summary>
internal sealed partial class PusherWebhookReceiver
{
    /// <summary>Events in one POST at most: Pusher's batches stay small; 100 keeps a body well under a megabyte.</summary>
    public const int MaxBatch = 100;

    private static readonly TimeSpan FirstRetryDelay = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan MaxRetryDelay = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan DropLogPeriod = TimeSpan.FromSeconds(10);
    private static readonly MediaTypeHeaderValue Json = new("application/json");

    private readonly string _app;
    private readonly string _key;
    private readonly Uri _url;
    private readonly HashSet<string> _events;
    private readonly PusherOptions _options;
    private readonly IRelayKeys _keys;
    private readonly HttpClient _http;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Channel<PusherWebhookEvent> _queue;
    private long _dropped;
    private long _lastDropLog;

    public PusherWebhookReceiver(string app, string key, PusherWebhookOptions webhook, PusherOptions options, IRelayKeys keys, HttpClient http, TimeProvider time, ILogger logger)
    {
        _app = app;
        _key = key;
        _url = new Uri(webhook.Url!);
        _events = webhook.Events.Count == 0 ? [.. PusherWebhookEvents.All] : new HashSet<string>(webhook.Events, StringComparer.Ordinal);
        _options = options;
        _keys = keys;
        _http = http;
        _time = time;
        _logger = logger;
        _queue = Channel.CreateBounded<PusherWebhookEvent>(new BoundedChannelOptions(options.WebhookQueueCapacity) { FullMode = BoundedChannelFullMode.Wait, SingleReader = true });
    }

    public bool Wants(string name) => _events.Contains(name);

    /// <summary>Queues an event the receiver asked for; never waits.</summary>
    public void Post(PusherWebhookEvent webhookEvent)
    {
        if (!_events.Contains(webhookEvent.Name) || _queue.Writer.TryWrite(webhookEvent))
        {
            return;
        }

        Interlocked.Increment(ref _dropped);
        var now = _time.GetTimestamp();
        var last = Interlocked.Read(ref _lastDropLog);
        if ((last == 0 || _time.GetElapsedTime(last, now) >= DropLogPeriod) && Interlocked.CompareExchange(ref _lastDropLog, now, last) == last)
        {
            LogDropped(_logger, Interlocked.Exchange(ref _dropped, 0), _app, _url.GetLeftPart(UriPartial.Path), _options.WebhookQueueCapacity);
        }
    }

    /// <summary>Sends until <paramref name="stoppingToken"/> is cancelled; what is still queued then is not sent.</summary>
    public async Task RunAsync(CancellationToken stoppingToken)
    {
        await Task.CompletedTask.ConfigureAwait(ConfigureAwaitOptions.ForceYielding);
        var batch = new List<PusherWebhookEvent>(MaxBatch);
        try
        {
            while (await _queue.Reader.WaitToReadAsync(stoppingToken).ConfigureAwait(false))
            {
                batch.Clear();
                while (batch.Count < MaxBatch && _queue.Reader.TryRead(out var item))
                {
                    batch.Add(item);
                }

                await DeliverAsync(Body(batch), batch.Count, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private byte[] Body(List<PusherWebhookEvent> batch)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer, PusherData.WriterOptions))
        {
            writer.WriteStartObject();
            writer.WriteNumber("time_ms"u8, _time.GetUtcNow().ToUnixTimeMilliseconds());
            writer.WriteStartArray("events"u8);
            foreach (var item in batch)
            {
                item.Write(writer);
            }

            writer.WriteEndArray();
            writer.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    private async Task DeliverAsync(byte[] body, int count, CancellationToken stoppingToken)
    {
        var delay = FirstRetryDelay;
        for (var attempt = 1; ; attempt++)
        {
            var failure = await SendAsync(body, stoppingToken).ConfigureAwait(false);
            if (failure is null)
            {
                return;
            }

            if (attempt >= _options.WebhookMaxAttempts)
            {
                LogDeadLetter(_logger, count, _app, _url.GetLeftPart(UriPartial.Path), attempt, failure, System.Text.Encoding.UTF8.GetString(body));
                return;
            }

            LogRetrying(_logger, count, _app, _url.GetLeftPart(UriPartial.Path), attempt, failure, delay.TotalMilliseconds);
            await Task.Delay(delay, _time, stoppingToken).ConfigureAwait(false);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxRetryDelay.Ticks));
        }
    }

    /// <summary>One POST; null when the receiver took it, else why not.</summary>
    private async Task<string?> SendAsync(byte[] body, CancellationToken stoppingToken)
    {
        Span<byte> hash = stackalloc byte[32];
        if (!_keys.TryHmacSha256(_key, body, hash))
        {
            return $"key {_key} (Relay:Pusher:Apps:{_app}:WebhookKey) does not exist";
        }

        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        deadline.CancelAfter(TimeSpan.FromSeconds(_options.WebhookTimeoutSeconds));
        try
        {
            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = Json;
            using var request = new HttpRequestMessage(HttpMethod.Post, _url) { Content = content };
            request.Headers.Add("X-Pusher-Key", _key);
            request.Headers.Add("X-Pusher-Signature", Convert.ToHexStringLower(hash));
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, deadline.Token).ConfigureAwait(false);
            return response.IsSuccessStatusCode ? null : "HTTP " + ((int)response.StatusCode).ToString(CultureInfo.InvariantCulture);
        }
        catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested)
        {
            return $"no answer within {_options.WebhookTimeoutSeconds} s";
        }
        catch (HttpRequestException e)
        {
            return e.HttpRequestError == HttpRequestError.Unknown ? e.Message : e.HttpRequestError.ToString();
        }
        catch (IOException e)
        {
            return e.Message;
        }
    }

    [LoggerMessage(EventId = 1520, Level = LogLevel.Warning, Message = "Dropped {Count} Pusher webhook events of app {App} for {Url}: its queue held Relay:Pusher:WebhookQueueCapacity ({Capacity}) events")]
    private static partial void LogDropped(ILogger logger, long count, string app, string url, int capacity);

    [LoggerMessage(EventId = 1521, Level = LogLevel.Debug, Message = "Pusher webhook of {Count} events of app {App} to {Url} failed on try {Attempt} ({Failure}); trying again in {DelayMs} ms")]
    private static partial void LogRetrying(ILogger logger, int count, string app, string url, int attempt, string failure, double delayMs);

    [LoggerMessage(EventId = 1522, Level = LogLevel.Warning, Message = "Dead letter: Pusher webhook of {Count} events of app {App} to {Url} failed {Attempts} tries, the last with {Failure}; body {Body}")]
    private static partial void LogDeadLetter(ILogger logger, int count, string app, string url, int attempts, string failure, string body);
}

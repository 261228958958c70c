using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Bus.FanOut;
using Relay.Core.Messages;
using Relay.Functions.Calls;
using Relay.Functions.Delivery;

namespace Relay.Functions.Webhooks;

/// <summary>
/// Sends webhook events: messages and presence events from fan-out (it taps <see cref="ISequencedTap"/>), channel
/// occupied/vacated from fan-out's interest (<see cref="OccupancyTracker"/>). Each receiver has its own bounded queue
/// and workers, so a slow or absent receiver never slows fan-out or another receiver. Each body is signed
/// (<see cref="WebhookSignature"/>), retried with backoff and dead-lettered after the last try.
/// </summary>
internal sealed class WebhookDispatcher : BackgroundService, ISequencedTap
{
    /// <summary>The <c>kind</c> of these calls in metrics and dead letters.</summary>
    public const string Kind = "webhook";

    private readonly Receiver[] _receivers;

    /// <summary>Creates a queue per configured webhook; with none, every call returns at once.</summary>
    public WebhookDispatcher(IOptions<FunctionsOptions> options, FunctionCaller caller, TimeProvider time, FunctionsMetrics metrics, DeadLetters deadLetters, ILogger<WebhookDispatcher> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(caller);
        var settings = options.Value;
        _receivers = [.. settings.Webhooks.Select(webhook => new Receiver(webhook, settings, caller.Http, time, metrics, deadLetters, logger))];
    }

    /// <summary>Whether any webhook asks for channel occupied/vacated events.</summary>
    internal bool WantsOccupancy => _receivers.Any(static r => r.Wants(WebhookEventTypes.Occupied) || r.Wants(WebhookEventTypes.Vacated));

    /// <inheritdoc />
    public void OnSequenced(RelayMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var type = message.PresenceAction is null ? WebhookEventTypes.Message : WebhookEventTypes.Presence;
        WebhookEvent? webhookEvent = null;
        foreach (var receiver in _receivers)
        {
            if (receiver.Wants(type, message.App, message.Channel))
            {
                // One event (one id, one body) for every receiver of it.
                receiver.Queue.TryEnqueue(webhookEvent ??= new WebhookEvent(type, message.App, message.Channel, message.Timestamp, message));
            }
        }
    }

    internal void OnOccupancy(string app, string channel, bool occupied, long timestamp)
    {
        var type = occupied ? WebhookEventTypes.Occupied : WebhookEventTypes.Vacated;
        WebhookEvent? webhookEvent = null;
        foreach (var receiver in _receivers)
        {
            if (receiver.Wants(type, app, channel))
            {
                receiver.Queue.TryEnqueue(webhookEvent ??= new WebhookEvent(type, app, channel, timestamp, null));
            }
        }
    }

    /// <inheritdoc />
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(_receivers.Select(r => r.Queue.RunAsync(stoppingToken)));

    private sealed class Receiver
    {
        private readonly WebhookOptions _webhook;
        private readonly HashSet<string> _events;
        private readonly Uri _url;
        private readonly HttpClient _http;
        private readonly TimeProvider _time;
        private readonly TimeSpan _timeout;

        public Receiver(WebhookOptions webhook, FunctionsOptions options, HttpClient http, TimeProvider time, FunctionsMetrics metrics, DeadLetters deadLetters, ILogger logger)
        {
            _webhook = webhook;
            _events = webhook.Events.Count == 0
                ? [WebhookEventTypes.Occupied, WebhookEventTypes.Vacated, WebhookEventTypes.Presence, WebhookEventTypes.Message]
                : new HashSet<string>(webhook.Events, StringComparer.Ordinal);
            _url = new Uri(webhook.Url!);
            _http = http;
            _time = time;
            _timeout = options.DeliveryTimeout;
            Queue = new DeliveryQueue(Kind, _url.GetLeftPart(UriPartial.Path), SendAsync, options, time, metrics, deadLetters, logger);
        }

        public DeliveryQueue Queue { get; }

        public bool Wants(string type) => _events.Contains(type);

        public bool Wants(string type, string app, string channel) =>
            _events.Contains(type)
            && (_webhook.App is null || string.Equals(_webhook.App, app, StringComparison.Ordinal))
            && (_webhook.ChannelPrefix is null || channel.StartsWith(_webhook.ChannelPrefix, StringComparison.Ordinal));

        private async Task<CallResult> SendAsync(IOutbound item, int attempt, CancellationToken stoppingToken)
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            deadline.CancelAfter(_timeout);
            try
            {
                var body = item.Body;
                using var request = new HttpRequestMessage(HttpMethod.Post, _url) { Content = FunctionCaller.Content(body) };
                request.Headers.Add(WebhookSignature.Header, WebhookSignature.Sign(_webhook.Secret!, _time.GetUtcNow().ToUnixTimeSeconds(), body.Span));
                request.Headers.Add(WebhookSignature.IdHeader, item.Id);
                request.Headers.Add(WebhookSignature.AttemptHeader, attempt.ToString(System.Globalization.CultureInfo.InvariantCulture));
                using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, deadline.Token).ConfigureAwait(false);
                return response.IsSuccessStatusCode ? new CallResult([], null) : CallResult.Failed($"HTTP {(int)response.StatusCode}");
            }
            catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested)
            {
                return CallResult.Failed($"no answer within {_timeout.TotalMilliseconds:0} ms", timedOut: true);
            }
            catch (HttpRequestException e)
            {
                return CallResult.Failed(e.HttpRequestError == HttpRequestError.Unknown ? e.Message : e.HttpRequestError.ToString());
            }
            catch (IOException e)
            {
                return CallResult.Failed(e.Message);
            }
        }
    }
}

using System.Net;
using System.Text.Json;

namespace Relay.Client;

/// <summary>
/// Sits under <see cref="System.Net.WebSockets.ClientWebSocket"/>'s handshake and keeps the JSON error body of a refused
/// upgrade (<c>{"error":{"code":40102,…}}</c>), which the WebSocket API itself does not expose.
/// </summary>
internal sealed class UpgradeErrorCapture() : DelegatingHandler(new SocketsHttpHandler())
{
    private const int MaxErrorBodyBytes = 64 * 1024;

    private RelayClientException? _lastError;

    /// <summary>The error of the last refused upgrade, once.</summary>
    public RelayClientException? TakeLastError() => Interlocked.Exchange(ref _lastError, null);

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        _lastError = null;
        var response = await base.SendAsync(request, cancellationToken).ConfigureAwait(false);
        if ((int)response.StatusCode >= 400)
        {
            _lastError = await ReadErrorAsync(response, cancellationToken).ConfigureAwait(false);
        }

        return response;
    }

    private static async Task<RelayClientException> ReadErrorAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        var status = (int)response.StatusCode;
        try
        {
            if (response.Content.Headers.ContentLength is null or <= MaxErrorBodyBytes)
            {
                var body = await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false);
                using var document = JsonDocument.Parse(body);
                if (document.RootElement.ValueKind == JsonValueKind.Object
                    && document.RootElement.TryGetProperty("error", out var error)
                    && error.ValueKind == JsonValueKind.Object
                    && error.TryGetProperty("code", out var code)
                    && code.TryGetInt32(out var number))
                {
                    var message = error.TryGetProperty("message", out var text) && text.ValueKind == JsonValueKind.String ? text.GetString() : null;
                    return new RelayClientException(number, message ?? $"the server refused the connection with HTTP {status}");
                }
            }
        }
        catch (Exception ex) when (ex is JsonException or HttpRequestException or IOException or InvalidOperationException)
        {
            // Not a Relay error body: fall back to the status.
        }

        return new RelayClientException(status * 100, $"the server refused the connection with HTTP {status} ({(HttpStatusCode)status})");
    }
}

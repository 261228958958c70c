using System.Net.Http.Headers;
using Microsoft.Extensions.Options;
using Relay.Functions.Hooks;

namespace Relay.Functions.Calls;

/// <summary>
/// Calls hooks: POSTs a JSON body to an HTTP target, or invokes a <c>lambda:</c> target through the Lambda Invoke API
/// (<see cref="LambdaInvoker"/>), and reads the answer up to <see cref="FunctionsOptions.MaxAnswerBytes"/>. Never throws
/// for the target's sake: a refused connection, a non-2xx status, a timeout or an oversized answer is a failed result.
/// </summary>
internal sealed class FunctionCaller : IDisposable
{
    private static readonly MediaTypeHeaderValue Json = new("application/json");

    private readonly HttpClient _http;
    private readonly LambdaInvoker _lambda;
    private readonly int _maxAnswerBytes;

    public FunctionCaller(IOptions<FunctionsOptions> options, LambdaInvoker lambda)
    {
        ArgumentNullException.ThrowIfNull(options);
        _maxAnswerBytes = options.Value.MaxAnswerBytes;
        _lambda = lambda;

        // Timeouts are per call (a token); connections are recycled so a hook's DNS change is seen within minutes.
        _http = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(2), AllowAutoRedirect = false })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
    }

    /// <summary>The client webhooks are sent with (headers of their own).</summary>
    public HttpClient Http => _http;

    /// <summary>Calls <paramref name="target"/> with <paramref name="body"/>; the answer within <paramref name="timeout"/>.</summary>
    public async Task<CallResult> CallAsync(HookTarget target, ReadOnlyMemory<byte> body, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            using var request = target.FunctionArn is not null
                ? _lambda.CreateRequest(target, body)
                : new HttpRequestMessage(HttpMethod.Post, target.Url) { Content = Content(body) };
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, deadline.Token).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                return CallResult.Failed($"HTTP {(int)response.StatusCode}");
            }

            if (target.FunctionArn is not null && response.Headers.TryGetValues(LambdaInvoker.FunctionErrorHeader, out var errors))
            {
                return CallResult.Failed($"function error ({string.Join(',', errors)})");
            }

            return await ReadAsync(response, deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return CallResult.Failed($"no answer within {timeout.TotalMilliseconds:0} ms", timedOut: true);
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

    /// <summary>Reads an answer's body, refusing one longer than <see cref="FunctionsOptions.MaxAnswerBytes"/>.</summary>
    public async Task<CallResult> ReadAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(response);
        if (response.Content.Headers.ContentLength > _maxAnswerBytes)
        {
            return CallResult.Failed($"answer of {response.Content.Headers.ContentLength} bytes, over Relay:Functions:MaxAnswerBytes");
        }

        var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        await using (stream.ConfigureAwait(false))
        {
            using var buffer = new MemoryStream();
            var chunk = new byte[16 * 1024];
            int read;
            while ((read = await stream.ReadAsync(chunk, cancellationToken).ConfigureAwait(false)) > 0)
            {
                if (buffer.Length + read > _maxAnswerBytes)
                {
                    return CallResult.Failed("answer over Relay:Functions:MaxAnswerBytes");
                }

                buffer.Write(chunk, 0, read);
            }

            return new CallResult(buffer.ToArray(), null);
        }
    }

    public static HttpContent Content(ReadOnlyMemory<byte> body)
    {
        var content = new ReadOnlyMemoryContent(body);
        content.Headers.ContentType = Json;
        return content;
    }

    public void Dispose() => _http.Dispose();
}

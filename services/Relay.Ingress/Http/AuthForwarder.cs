using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;
using Relay.Core.Protocol;
using Relay.ServiceDefaults;

namespace Relay.Ingress.Http;

/// <summary>
/// <c>POST /v1/tokens</c> and <c>GET /.well-known/jwks.json</c> on an ingress node that follows the auth service
/// (<c>Relay:Ingress:AuthUrl</c>): each request goes to the auth service as it came (method, path, query,
/// <c>Authorization</c>, <c>Content-Type</c>, body) and its answer comes back as it was (status, body, <c>Cache-Control</c>…),
/// so a client given any node's URL gets exactly what the auth service says. Nodes hold no token-signing key.
/// An auth service that does not answer within <c>AuthTimeout</c> gives 503 with 50300 and <c>Retry-After</c>.
/// </summary>
internal static class AuthForwarder
{
    /// <summary>The named <see cref="HttpClient"/> (base address and timeout from <see cref="IngressOptions"/>).</summary>
    public const string HttpClientName = "relay-auth";

    /// <summary>
    /// The auth service's own limit on a token request (three small fields): a body past it is refused here as the auth
    /// service refuses it, unread, rather than read and sent on to be refused there.
    /// </summary>
    public const int MaxTokenBodyBytes = 64 * 1024;

    /// <summary>Seconds a client is told to wait after a 503: the auth service restarting takes a few.</summary>
    private const string RetryAfterSeconds = "5";

    // Per-connection headers, and those Kestrel writes itself from the body it sends.
    private static readonly HashSet<string> NotPassedBack = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Proxy-Connection", "Content-Length", "Server", "Date",
    };

    public static void Map(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPost("/v1/tokens", ForwardTokenRequestAsync).AddEndpointFilter(RefusalLog.FilterAsync);
        endpoints.MapGet("/.well-known/jwks.json", static (HttpContext context, IHttpClientFactory clients, IOptions<IngressOptions> options) =>
            ForwardAsync(context, clients, options.Value, HttpMethod.Get, ".well-known/jwks.json", body: null)).AddEndpointFilter(RefusalLog.FilterAsync);
    }

    private static async Task<IResult> ForwardTokenRequestAsync(HttpContext context, IHttpClientFactory clients, IOptions<IngressOptions> options)
    {
        // As the auth service answers a body too large or broken, and with Connection: close: the rest is not read.
        IResult RefuseBody(string message)
        {
            context.Response.Headers.Connection = "close";
            return RelayResults.Error(RelayError.BadRequest(message));
        }

        if (context.Request.ContentLength > MaxTokenBodyBytes)
        {
            return RefuseBody($"the body is larger than {MaxTokenBodyBytes} bytes");
        }

        byte[]? body;
        try
        {
            body = await ReadBodyAsync(context.Request.BodyReader, context.RequestAborted).ConfigureAwait(false);
        }
        catch (BadHttpRequestException ex)
        {
            return RefuseBody("unreadable request body: " + ex.Message);
        }

        return body is null
            ? RefuseBody($"the body is larger than {MaxTokenBodyBytes} bytes")
            : await ForwardAsync(context, clients, options.Value, HttpMethod.Post, "v1/tokens", body).ConfigureAwait(false);
    }

    private static async Task<IResult> ForwardAsync(HttpContext context, IHttpClientFactory clients, IngressOptions options, HttpMethod method, string path, byte[]? body)
    {
        using var request = new HttpRequestMessage(method, new Uri(path + context.Request.QueryString.Value, UriKind.Relative));
        foreach (var value in context.Request.Headers.Authorization)
        {
            request.Headers.TryAddWithoutValidation("Authorization", value);
        }

        foreach (var value in context.Request.Headers.Accept)
        {
            request.Headers.TryAddWithoutValidation("Accept", value);
        }

        if (body is not null)
        {
            request.Content = new ByteArrayContent(body);
            if (context.Request.ContentType is { } contentType)
            {
                request.Content.Headers.TryAddWithoutValidation("Content-Type", contentType);
            }
        }

        var client = clients.CreateClient(HttpClientName);
        HttpResponseMessage response;
        try
        {
            // The whole answer is read within the client's timeout (AuthTimeout): a token or a key set is small.
            response = await client.SendAsync(request, HttpCompletionOption.ResponseContentRead, context.RequestAborted).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return Results.Empty;
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException)
        {
            context.Response.Headers.RetryAfter = RetryAfterSeconds;
            var why = ex is OperationCanceledException ? $"did not answer within {options.AuthTimeout.TotalSeconds:0.###} s" : "is unreachable";
            return RelayResults.Error(ErrorCodes.Unavailable, $"the auth service {why} (Relay:Ingress:AuthUrl); try again shortly");
        }

        using (response)
        {
            context.Response.StatusCode = (int)response.StatusCode;
            foreach (var (name, values) in response.Headers.Concat(response.Content.Headers))
            {
                if (!NotPassedBack.Contains(name))
                {
                    context.Response.Headers[name] = values.ToArray();
                }
            }

            var bytes = await response.Content.ReadAsByteArrayAsync(context.RequestAborted).ConfigureAwait(false);
            context.Response.ContentLength = bytes.Length;
            await context.Response.Body.WriteAsync(bytes, context.RequestAborted).ConfigureAwait(false);
            return Results.Empty;
        }
    }

    /// <summary>The whole body, or null when it passes <see cref="MaxTokenBodyBytes"/>.</summary>
    private static async Task<byte[]?> ReadBodyAsync(PipeReader reader, CancellationToken cancellationToken)
    {
        while (true)
        {
            var read = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = read.Buffer;
            if (buffer.Length > MaxTokenBodyBytes)
            {
                reader.AdvanceTo(buffer.End);
                return null;
            }

            if (read.IsCompleted)
            {
                var body = buffer.ToArray();
                reader.AdvanceTo(buffer.End);
                return body;
            }

            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }
}

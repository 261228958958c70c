using System.Text;
using System.Text.Json;
using Amazon.Runtime;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;
using Relay.Core.Channels;
using Relay.Core.Messages;
using Relay.Core.Protocol;
using Relay.ServiceDefaults;

namespace Relay.Functions.Archive;

/// <summary>
/// The archive as a function (the Lambda app's one handler): takes an after-publish hook's body and writes its messages
/// to S3 in the archive's layout, so a namespace's <c>AfterPublish:Target</c> can be this app on Lambda (an HTTP URL,
/// or <c>lambda:&lt;arn&gt;</c>: the Lambda Web Adapter hands a direct invocation's event to <c>POST /events</c>).
/// </summary>
public static class ArchiveFunction
{
    /// <summary>The HTTP path.</summary>
    public const string Path = "/v1/functions/archive";

    /// <summary>The Lambda Web Adapter's default path for events that are not HTTP requests (<c>AWS_LWA_PASS_THROUGH_PATH</c>).</summary>
    public const string EventsPath = "/events";

    /// <summary>Largest body taken: an after-publish of a full HTTP batch fits.</summary>
    private const int MaxBodyBytes = 16 * 1024 * 1024;

    /// <summary>Maps <see cref="Path"/> and <see cref="EventsPath"/>. Only the Lambda app maps them: they write to the bucket for whoever can reach them.</summary>
    public static IEndpointRouteBuilder MapRelayArchiveFunction(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        endpoints.MapPost(Path, HandleAsync);
        endpoints.MapPost(EventsPath, HandleAsync);
        return endpoints;
    }

    private static async Task<IResult> HandleAsync(HttpContext context, IOptions<FunctionsOptions> options)
    {
        var archive = options.Value.Archive;
        if (!archive.Enabled)
        {
            return RelayResults.Error(ErrorCodes.Unavailable, "no archive is configured: set Relay:Functions:Archive:Bucket");
        }

        using var buffer = new MemoryStream();
        await context.Request.Body.CopyToAsync(buffer, context.RequestAborted).ConfigureAwait(false);
        if (buffer.Length > MaxBodyBytes)
        {
            return RelayResults.Error(ErrorCodes.MessageTooLarge, $"a body of {buffer.Length} bytes is over {MaxBodyBytes}");
        }

        if (!TryRead(buffer.ToArray(), out var app, out var channel, out var messages, out var error))
        {
            return RelayResults.Error(ErrorCodes.BadRequest, error);
        }

        var writer = context.RequestServices.GetService(typeof(ArchiveWriter)) as ArchiveWriter ?? throw new InvalidOperationException("AddRelayArchiveFunction() registers the writer");
        var key = ArchiveKeys.For(archive.Prefix, app, channel, messages[0].Epoch, messages[0].Seq, messages[^1].Seq);
        try
        {
            await writer.WriteAsync(key, messages, context.RequestAborted).ConfigureAwait(false);
        }
        catch (Exception e) when (e is AmazonServiceException or AmazonClientException or HttpRequestException or IOException)
        {
            // The caller (the after-publish queue) tries again.
            return RelayResults.Error(ErrorCodes.Unavailable, "the archive could not write to S3: " + e.Message);
        }

        return Results.Ok(new { archived = messages.Count, key });
    }

    /// <summary>Reads an after-publish body (docs/functions.md) into the messages it carries, in seq order, each seq once.</summary>
    internal static bool TryRead(byte[] body, out string app, out string channel, out List<RelayMessage> messages, out string error)
    {
        (app, channel, messages, error) = (string.Empty, string.Empty, [], string.Empty);
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("type"u8, out var type) || !type.ValueEquals("afterPublish"u8))
            {
                error = "expected an after-publish body: {\"type\":\"afterPublish\",…}";
                return false;
            }

            app = root.TryGetProperty("app"u8, out var a) && a.ValueKind == JsonValueKind.String ? a.GetString()! : string.Empty;
            channel = root.TryGetProperty("channel"u8, out var c) && c.ValueKind == JsonValueKind.String ? c.GetString()! : string.Empty;
            var epoch = root.TryGetProperty("epoch"u8, out var e) && e.ValueKind == JsonValueKind.String ? e.GetString()! : string.Empty;

            // Every channel Relay keeps history for: MQTT topics with empty levels (`a//b`, `/a`) too, the widest rule a
            // stored channel follows (the v1 rule is the same without empty levels). The key encodes the name whole.
            if (app.Length is 0 or > 64 || app.Contains('/', StringComparison.Ordinal) || !ChannelName.IsValidTopicName(channel, out _) || epoch.Length is 0 or > 64 || epoch.Contains('/', StringComparison.Ordinal))
            {
                error = "'app', 'channel' and 'epoch' must be set and valid";
                return false;
            }

            var clientId = root.TryGetProperty("clientId"u8, out var id) && id.ValueKind == JsonValueKind.String ? id.GetString() : null;
            var timestamp = root.TryGetProperty("timestamp"u8, out var t) && t.TryGetInt64(out var ms) ? ms : 0;
            var seen = new HashSet<long>();
            foreach (var item in root.GetProperty("messages"u8).EnumerateArray())
            {
                var seq = item.GetProperty("seq"u8).GetInt64();
                if (seq < 1 || !seen.Add(seq))
                {
                    continue;
                }

                var binary = item.TryGetProperty("encoding"u8, out var encoding) && encoding.ValueEquals("base64"u8);
                var data = item.GetProperty("data"u8);
                messages.Add(new RelayMessage
                {
                    App = app,
                    Channel = channel,
                    Epoch = epoch,
                    Seq = seq,
                    Id = item.TryGetProperty("id"u8, out var mid) && mid.ValueKind == JsonValueKind.String ? mid.GetString() : null,
                    Name = item.TryGetProperty("name"u8, out var name) && name.ValueKind == JsonValueKind.String ? name.GetString() : null,
                    Data = binary ? data.GetBytesFromBase64() : Encoding.UTF8.GetBytes(data.GetRawText()),
                    DataIsJson = !binary,
                    ClientId = clientId,
                    Timestamp = timestamp,
                });
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException or FormatException)
        {
            error = "not an after-publish body: " + e.Message;
            return false;
        }

        if (messages.Count == 0)
        {
            error = "no messages";
            return false;
        }

        messages.Sort(static (x, y) => x.Seq.CompareTo(y.Seq));
        return true;
    }
}

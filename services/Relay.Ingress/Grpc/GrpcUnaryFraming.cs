using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.IO.Pipelines;
using Grpc.AspNetCore.Server;
using Grpc.Core;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Core.Protocol;

namespace Relay.Ingress.Grpc;

/// <summary>
/// Reads a unary call's request into the request's own pipe (at most <c>Relay:Grpc:MaxReceiveMessageBytes</c>) before
/// Grpc.AspNetCore does, consuming nothing, and answers broken gRPC framing itself: one length-prefixed message, flag 0,
/// or 1 with a <c>grpc-encoding</c> it decompresses with (gRPC-Web text decoded from base64 to be checked). Grpc.AspNetCore
/// throws for such a body before any of Relay's code runs, and ends the call UNKNOWN with an error logged (found by
/// <c>GrpcFuzzTests</c>); here it is INVALID_ARGUMENT with 40000 (RESOURCE_EXHAUSTED with 41300 past the limit), as any
/// other bad request. A body that passes is read by the framework from the same buffers: no copy, no second pipe.
/// Streams are checked by their read loop.
/// </summary>
internal sealed partial class GrpcUnaryFraming(RequestDelegate next, IOptions<GrpcOptions> options, ILogger<GrpcUnaryFraming> logger)
{
    private const int HeaderBytes = 5;

    public async Task InvokeAsync(HttpContext context)
    {
        if (context.GetEndpoint()?.Metadata.GetMetadata<GrpcMethodMetadata>() is not { Method.Type: MethodType.Unary } metadata
            || !HttpMethods.IsPost(context.Request.Method))
        {
            await next(context).ConfigureAwait(false);
            return;
        }

        var contentType = context.Request.ContentType ?? string.Empty;
        var web = contentType.StartsWith("application/grpc-web", StringComparison.OrdinalIgnoreCase);
        var text = contentType.StartsWith("application/grpc-web-text", StringComparison.OrdinalIgnoreCase);
        if (!web && context.Request.Protocol != HttpProtocol.Http2)
        {
            // Plain gRPC over HTTP/1.1: the framework refuses it by protocol (426) before reading anything.
            await next(context).ConfigureAwait(false);
            return;
        }

        // gRPC-Web text is base64 of the same bytes: at most 4 characters for every 3.
        var max = options.Value.MaxReceiveMessageBytes;
        var limit = HeaderBytes + (long)max;
        var reader = context.Request.BodyReader;
        var (body, refusal) = await ReadAllAsync(reader, text ? (limit + 2) / 3 * 4 : limit).ConfigureAwait(false);
        if (refusal is null)
        {
            // Checked where it lies, then left unconsumed: the framework (through gRPC-Web's middleware for gRPC-Web) reads
            // these same bytes next, not a copy.
            refusal = text
                ? DecodeBase64(body) is { } decoded ? Check(new ReadOnlySequence<byte>(decoded), max, context) : RelayError.BadRequest("the request body is not base64 (application/grpc-web-text)")
                : Check(body, max, context);
            reader.AdvanceTo(body.Start, body.End);
        }

        if (refusal is not null)
        {
            LogRefused(logger, metadata.Method.FullName, refusal.Message);
            Refuse(context, refusal);
            return;
        }

        await next(context).ConfigureAwait(false);
    }

    // The whole body, buffered in the request's own pipe with nothing consumed (the caller advances past nothing once it
    // has checked it), or a refusal once it is longer than one message may be.
    private static async Task<(ReadOnlySequence<byte> Body, RelayError? Refusal)> ReadAllAsync(PipeReader reader, long limit)
    {
        while (true)
        {
            var result = await reader.ReadAsync().ConfigureAwait(false);
            var buffer = result.Buffer;
            if (buffer.Length > limit)
            {
                reader.AdvanceTo(buffer.Start, buffer.End);
                return (default, new RelayError(ErrorCodes.MessageTooLarge, "the request is larger than Relay:Grpc:MaxReceiveMessageBytes"));
            }

            if (result.IsCompleted || result.IsCanceled)
            {
                return (buffer, null);
            }

            reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    // gRPC-Web text: base64 in groups of four characters, each message's padded on its own (so padding may come between).
    // Decoded here only to check it: gRPC-Web's middleware decodes the body for the framework as it reads it.
    private static byte[]? DecodeBase64(ReadOnlySequence<byte> body)
    {
        if (body.Length % 4 != 0)
        {
            return null;
        }

        var text = body.IsSingleSegment ? body.FirstSpan : body.ToArray();
        var decoded = new byte[text.Length / 4 * 3];
        var written = 0;
        for (var at = 0; at < text.Length; at += 4)
        {
            if (System.Buffers.Text.Base64.DecodeFromUtf8(text.Slice(at, 4), decoded.AsSpan(written), out _, out var bytes) != OperationStatus.Done)
            {
                return null;
            }

            written += bytes;
        }

        return decoded[..written];
    }

    private static RelayError? Check(ReadOnlySequence<byte> body, int max, HttpContext context)
    {
        if (body.Length < HeaderBytes)
        {
            return RelayError.BadRequest($"the request body is not a length-prefixed gRPC message ({body.Length} bytes)");
        }

        Span<byte> header = stackalloc byte[HeaderBytes];
        body.Slice(0, HeaderBytes).CopyTo(header);
        var length = BinaryPrimitives.ReadUInt32BigEndian(header[1..]);
        if (length > max)
        {
            return new RelayError(ErrorCodes.MessageTooLarge, $"the message of {length} bytes is larger than Relay:Grpc:MaxReceiveMessageBytes ({max})");
        }

        if (length != body.Length - HeaderBytes)
        {
            return RelayError.BadRequest($"a unary request is one gRPC message: its prefix says {length} bytes, {body.Length - HeaderBytes} followed");
        }

        return header[0] switch
        {
            0 => null,
            1 => CheckCompressed(body.Slice(HeaderBytes), max, context.Request.Headers["grpc-encoding"].ToString()),
            var flag => RelayError.BadRequest($"compressed flag {flag}: a gRPC message's flag is 0 or 1"),
        };
    }

    // A compressed message must decompress (to at most the limit) with the encoding the request names.
    private static RelayError? CheckCompressed(ReadOnlySequence<byte> message, int max, string encoding)
    {
        using var compressed = new MemoryStream(message.ToArray(), writable: false);
        using Stream? decompressing = encoding switch
        {
            "gzip" => new GZipStream(compressed, CompressionMode.Decompress),
            "deflate" => new ZLibStream(compressed, CompressionMode.Decompress),
            _ => null,
        };
        if (decompressing is null)
        {
            return RelayError.BadRequest($"a compressed message needs grpc-encoding gzip or deflate (it was '{encoding}')");
        }

        var chunk = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            long total = 0;
            int read;
            while ((read = decompressing.Read(chunk)) > 0)
            {
                total += read;
                if (total > max)
                {
                    return new RelayError(ErrorCodes.MessageTooLarge, $"the message decompresses past Relay:Grpc:MaxReceiveMessageBytes ({max})");
                }
            }

            return null;
        }
        catch (InvalidDataException)
        {
            return RelayError.BadRequest($"the message does not decompress with {encoding}");
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
        }
    }

    // A trailers-only response: the status and Relay's code (ErrorInfo and relay-error-code) in the headers.
    private static void Refuse(HttpContext context, RelayError error)
    {
        var exception = GrpcErrors.ToRpcException(error);
        var response = context.Response;
        var requested = context.Request.ContentType ?? string.Empty;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = requested.StartsWith("application/grpc-web-text", StringComparison.OrdinalIgnoreCase) ? "application/grpc-web-text"
            : requested.StartsWith("application/grpc-web", StringComparison.OrdinalIgnoreCase) ? "application/grpc-web"
            : "application/grpc";
        response.Headers["grpc-status"] = ((int)exception.StatusCode).ToString(CultureInfo.InvariantCulture);
        response.Headers["grpc-message"] = Uri.EscapeDataString(error.Message);
        foreach (var entry in exception.Trailers)
        {
            response.Headers[entry.Key] = entry.IsBinary ? Convert.ToBase64String(entry.ValueBytes) : entry.Value;
        }
    }

    [LoggerMessage(EventId = 1520, Level = LogLevel.Debug, Message = "gRPC call {Method} refused before it was read: {Reason}")]
    private static partial void LogRefused(ILogger logger, string method, string reason);
}

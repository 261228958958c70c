using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using System.IO.Pipelines;
using Grpc.AspNetCore.Server;
using Grpc.Core;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Core.Protocol;

namespace Relay.Ingress.Grpc;

/// <summary>
/// Reads a unary call's request into the request's own pipe (at most <c>Relay:Grpc:MaxReceiveMessageBytes</c>) before
/// Grpc.AspNetCore does, and answers broken gRPC framing itself: one length-prefixed message, flag 0, or 1 with a
/// <c>grpc-encoding</c> it decompresses with (gRPC-Web text decoded from base64 to be checked). Grpc.AspNetCore throws
/// for such a body before any of Relay's code runs, and ends the call UNKNOWN with an error logged (found by
/// <c>GrpcFuzzTests</c>); here it is INVALID_ARGUMENT with 40000 (RESOURCE_EXHAUSTED with 41300 past the limit, or when
/// it decompresses past it), as any other bad request. A plain body that passes is left unconsumed and read by the
/// framework from the same buffers: no copy, no second pipe. A body this check had to decode (gRPC-Web text) or
/// decompress is handed on as what it decoded to, so nothing decodes it twice: the framework reads that message
/// uncompressed (flag 0), and gRPC-Web's middleware is told the request is binary (its answer's form follows
/// <c>Accept</c>, as before). Streams are checked by their read loop.
/// </summary>
internal sealed partial class GrpcUnaryFraming(RequestDelegate next, IOptions<GrpcOptions> options, ILogger<GrpcUnaryFraming> logger)
{
    private const int HeaderBytes = 5;
    private const string TextContentType = "application/grpc-web-text";

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
        var text = contentType.StartsWith(TextContentType, StringComparison.OrdinalIgnoreCase);
        if (!web && context.Request.Protocol != HttpProtocol.Http2)
        {
            // Plain gRPC over HTTP/1.1: the framework refuses it by protocol (426) before reading anything.
            await next(context).ConfigureAwait(false);
            return;
        }

        // gRPC-Web text is base64 of the same bytes: at most 4 characters for every 3. The limit holds before anything is
        // decoded or decompressed.
        var max = options.Value.MaxReceiveMessageBytes;
        var limit = HeaderBytes + (long)max;
        var reader = context.Request.BodyReader;
        var (body, refusal) = await ReadAllAsync(reader, text ? (limit + 2) / 3 * 4 : limit).ConfigureAwait(false);
        GrpcCheckedBody? decoded = null;
        if (refusal is null)
        {
            decoded = text ? GrpcCheckedBody.DecodeBase64(body) : null;
            refusal = text && decoded is null
                ? RelayError.BadRequest("the request body is not base64 (application/grpc-web-text)")
                : Check(decoded?.Message ?? body, max, context, ref decoded);
            if (refusal is not null || decoded is null)
            {
                // Checked where it lies, then left unconsumed: the framework (through gRPC-Web's middleware for gRPC-Web)
                // reads these same bytes next, not a copy.
                reader.AdvanceTo(body.Start, body.End);
            }
            else
            {
                // What the check decoded is the request from here on; the body it came from is spent.
                reader.AdvanceTo(body.End);
                context.Features.Set<IRequestBodyPipeFeature>(decoded);
                context.Response.RegisterForDispose(decoded);
                if (text)
                {
                    context.Request.ContentType = "application/grpc-web" + contentType[TextContentType.Length..];
                }
            }
        }

        if (refusal is not null)
        {
            decoded?.Dispose();
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

    // A compressed message replaces what was read (or decoded) with itself decompressed, once it has decompressed whole.
    private static RelayError? Check(ReadOnlySequence<byte> body, int max, HttpContext context, ref GrpcCheckedBody? decoded)
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

        switch (header[0])
        {
            case 0:
                return null;
            case 1:
                var (decompressed, refusal) = GrpcCheckedBody.Decompress(body.Slice(HeaderBytes), max, context.Request.Headers["grpc-encoding"].ToString());
                if (decompressed is not null)
                {
                    decoded?.Dispose();
                    decoded = decompressed;
                }

                return refusal;
            case var flag:
                return RelayError.BadRequest($"compressed flag {flag}: a gRPC message's flag is 0 or 1");
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

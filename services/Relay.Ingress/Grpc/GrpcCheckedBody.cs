using System.Buffers;
using System.Buffers.Binary;
using System.Buffers.Text;
using System.IO.Compression;
using System.IO.Pipelines;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Http.Features;
using Relay.Core.Protocol;

namespace Relay.Ingress.Grpc;

/// <summary>
/// A unary request as <see cref="GrpcUnaryFraming"/> decoded it to check it (from gRPC-Web text's base64, or
/// decompressed), in one pooled buffer: set as the request's body, so that neither gRPC-Web's base64 reader nor the
/// framework's decompressor decodes it a second time. Back to the pool when the request ends.
/// </summary>
internal sealed class GrpcCheckedBody : IRequestBodyPipeFeature, IDisposable
{
    private const int HeaderBytes = 5;

    private readonly int _length;
    private byte[]? _buffer;
    private PipeReader? _reader;

    private GrpcCheckedBody(byte[] buffer, int length)
    {
        _buffer = buffer;
        _length = length;
    }

    /// <summary>The length-prefixed message.</summary>
    public ReadOnlySequence<byte> Message => new(_buffer ?? throw new ObjectDisposedException(nameof(GrpcCheckedBody)), 0, _length);

    public PipeReader Reader => _reader ??= PipeReader.Create(Message);

    /// <summary>
    /// gRPC-Web text: base64 in groups of four characters, each message's padded on its own (so padding may come between).
    /// Copied once from the request's pipe and decoded in place; null when it is not base64.
    /// </summary>
    public static GrpcCheckedBody? DecodeBase64(ReadOnlySequence<byte> body)
    {
        if (body.Length % 4 != 0)
        {
            return null;
        }

        var buffer = ArrayPool<byte>.Shared.Rent((int)body.Length);
        body.CopyTo(buffer);
        var text = buffer.AsSpan(0, (int)body.Length);
        var written = 0;
        for (var at = 0; at < text.Length;)
        {
            // Up to and with the next padded group, or to the end.
            var padding = text[at..].IndexOf((byte)'=');
            var end = padding < 0 ? text.Length : at + ((padding / 4) + 1) * 4;
            if (Base64.DecodeFromUtf8InPlace(text[at..end], out var bytes) != OperationStatus.Done)
            {
                ArrayPool<byte>.Shared.Return(buffer);
                return null;
            }

            text.Slice(at, bytes).CopyTo(text[written..]);
            written += bytes;
            at = end;
        }

        return new GrpcCheckedBody(buffer, written);
    }

    /// <summary>
    /// A compressed message decompressed with the encoding the request names, read straight from where it lies, and
    /// stopped as soon as it passes <paramref name="max"/> bytes (a small body that would expand without bound is refused
    /// having expanded one chunk past the limit). The result is the same message uncompressed: flag 0.
    /// </summary>
    public static (GrpcCheckedBody? Body, RelayError? Refusal) Decompress(ReadOnlySequence<byte> message, int max, string encoding)
    {
        // Read where it lies when it lies in one array (HTTP/2 frames, a decoded text body); a body Kestrel holds in
        // several blocks is gathered into one pooled array first.
        byte[]? gathered = null;
        if (!message.IsSingleSegment || !MemoryMarshal.TryGetArray(message.First, out var segment))
        {
            gathered = ArrayPool<byte>.Shared.Rent((int)message.Length);
            message.CopyTo(gathered);
            segment = new ArraySegment<byte>(gathered, 0, (int)message.Length);
        }

        try
        {
            using var compressed = new MemoryStream(segment.Array!, segment.Offset, segment.Count, writable: false);
            return Decompress(compressed, message.Length, max, encoding);
        }
        finally
        {
            if (gathered is not null)
            {
                ArrayPool<byte>.Shared.Return(gathered);
            }
        }
    }

    private static (GrpcCheckedBody? Body, RelayError? Refusal) Decompress(Stream compressed, long compressedLength, int max, string encoding)
    {
        using Stream? decompressing = encoding switch
        {
            "gzip" => new GZipStream(compressed, CompressionMode.Decompress),
            "deflate" => new ZLibStream(compressed, CompressionMode.Decompress),
            _ => null,
        };
        if (decompressing is null)
        {
            return (null, RelayError.BadRequest($"a compressed message needs grpc-encoding gzip or deflate (it was '{encoding}')"));
        }

        // Room for one byte past the limit, so that a message of exactly the limit is told from a larger one.
        var capacity = HeaderBytes + max + 1;
        var buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(capacity, Math.Max(16 * 1024, compressedLength * 4)));
        var written = HeaderBytes;
        try
        {
            int read;
            while ((read = decompressing.Read(buffer.AsSpan(written, Math.Min(buffer.Length, capacity) - written))) > 0)
            {
                written += read;
                if (written - HeaderBytes > max)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    return (null, new RelayError(ErrorCodes.MessageTooLarge, $"the message decompresses past Relay:Grpc:MaxReceiveMessageBytes ({max})"));
                }

                if (written == buffer.Length)
                {
                    var larger = ArrayPool<byte>.Shared.Rent(Math.Min(capacity, buffer.Length * 2));
                    buffer.AsSpan(0, written).CopyTo(larger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = larger;
                }
            }
        }
        catch (InvalidDataException)
        {
            ArrayPool<byte>.Shared.Return(buffer);
            return (null, RelayError.BadRequest($"the message does not decompress with {encoding}"));
        }

        buffer[0] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(1), (uint)(written - HeaderBytes));
        return (new GrpcCheckedBody(buffer, written), null);
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _buffer, null) is { } buffer)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}

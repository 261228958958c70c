using System.Buffers;

namespace Relay.Ingress.Pusher;

/// <summary>
/// A stream's or poll's response body, counted as pusher-js counts it: the length of its <c>responseText</c>, a
/// JavaScript string (UTF-16 code units), not bytes. pusher-js aborts a response at the first line end past 256 K of
/// those (<c>http_request.ts</c>, <c>MAX_BUFFER_LENGTH</c>); <see cref="PusherHttpSession"/> stops writing exactly there,
/// which it can only know by counting the same way (the lines carry raw UTF-8 for text beyond ASCII).
/// </summary>
internal sealed class PusherHttpResponseWriter(IBufferWriter<byte> body) : IBufferWriter<byte>
{
    private Memory<byte> _last;

    /// <summary>UTF-16 code units written so far.</summary>
    public long Units { get; private set; }

    public void Advance(int count)
    {
        // Every byte but a UTF-8 continuation byte starts a character; one of four bytes is two UTF-16 units. Counted per
        // byte, so a character split between two writes is still counted once.
        foreach (var b in _last.Span[..count])
        {
            Units += (b & 0xC0) == 0x80 ? 0 : b >= 0xF0 ? 2 : 1;
        }

        _last = default;
        body.Advance(count);
    }

    public Memory<byte> GetMemory(int sizeHint = 0) => _last = body.GetMemory(sizeHint);

    public Span<byte> GetSpan(int sizeHint = 0) => (_last = body.GetMemory(sizeHint)).Span;
}

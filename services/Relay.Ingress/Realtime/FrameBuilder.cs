using System.Buffers;
using System.Text.Json;
using Relay.Core.Protocol;

namespace Relay.Ingress.Realtime;

/// <summary>Builds one reply frame (replies are per request, not per delivery, so a small allocation is fine).</summary>
internal sealed class FrameBuilder : IDisposable
{
    private readonly ArrayBufferWriter<byte> _buffer = new(256);

    public FrameBuilder() => Writer = new Utf8JsonWriter(_buffer, ServerFrames.WriterOptions);

    public Utf8JsonWriter Writer { get; }

    public byte[] ToArray()
    {
        Writer.Flush();
        return _buffer.WrittenSpan.ToArray();
    }

    public void Dispose() => Writer.Dispose();
}

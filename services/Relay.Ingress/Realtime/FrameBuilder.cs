using System.Text.Json;
using Relay.Core.Protocol;

namespace Relay.Ingress.Realtime;

/// <summary>
/// Builds one reply frame on the thread's <see cref="FrameWriter"/>: only the frame's own array is allocated (a
/// publish's <c>ok</c> is about 60 bytes; a writer and buffer of its own were about 500 more).
/// </summary>
internal readonly struct FrameBuilder : IDisposable
{
    private readonly FrameWriter _frame;

    public FrameBuilder() => _frame = FrameWriter.Rent();

    public Utf8JsonWriter Writer => _frame.Writer;

    public byte[] ToArray() => _frame.ToArray();

    public void Dispose() => _frame.Dispose();
}

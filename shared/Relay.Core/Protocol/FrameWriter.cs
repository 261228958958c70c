using System.Buffers;
using System.Text.Json;

namespace Relay.Core.Protocol;

/// <summary>
/// A JSON writer and its buffer for building one frame, kept per thread: building a frame allocates only the frame's
/// own array. <see cref="Rent"/>, write with <see cref="Writer"/>, take <see cref="ToArray"/>, then
/// <see cref="Dispose"/> to give it back. A frame started while another is being built on the same thread gets a
/// writer of its own.
/// </summary>
/// <remarks>
/// A fresh <see cref="Utf8JsonWriter"/> and buffer per frame were most of what a publish allocated: 848 bytes to encode
/// a message with a 100-byte payload (the frame itself is about 250) and about 500 for a publish's <c>ok</c>
/// (tests/Relay.Bench.Micro.Tests, <c>PublishPathTests</c>).
/// </remarks>
public sealed class FrameWriter : IDisposable
{
    /// <summary>A message push with a small payload and every reply but history fit in this without growing.</summary>
    private const int InitialBytes = 1024;

    /// <summary>
    /// Larger buffers are not kept: a 64 KiB payload sent base64 needs 128 KiB, and a history page of a thousand such
    /// messages far more, which a thread should not hold after one such frame.
    /// </summary>
    private const int KeptBytes = 128 * 1024;

    [ThreadStatic]
    private static FrameWriter? t_free;

    private readonly ArrayBufferWriter<byte> _buffer = new(InitialBytes);

    private FrameWriter() => Writer = new Utf8JsonWriter(_buffer, ServerFrames.WriterOptions);

    /// <summary>The writer of the frame being built.</summary>
    public Utf8JsonWriter Writer { get; }

    /// <summary>Takes this thread's writer, or a new one when it is in use (or was too large to keep).</summary>
    public static FrameWriter Rent()
    {
        var writer = t_free;
        if (writer is null)
        {
            return new FrameWriter();
        }

        t_free = null;
        return writer;
    }

    /// <summary>The frame written so far, as a new array of its exact size.</summary>
    public byte[] ToArray()
    {
        Writer.Flush();
        return _buffer.WrittenSpan.ToArray();
    }

    /// <summary>Gives the writer back to this thread, empty (dropped instead when one frame grew it past 128 KiB).</summary>
    public void Dispose()
    {
        // Reset also forgets a half-written frame (a writer that threw), so the next frame starts clean.
        Writer.Reset();
        if (_buffer.Capacity > KeptBytes)
        {
            return;
        }

        _buffer.ResetWrittenCount();
        t_free = this;
    }
}

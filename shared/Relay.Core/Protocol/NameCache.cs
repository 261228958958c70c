using System.Text;

namespace Relay.Core.Protocol;

/// <summary>
/// The channel and event names a thread has parsed lately: a client publishing to the same channels gets the same
/// string back instead of a new one per request (no allocation, no transcoding), and later steps can tell a name they
/// have just checked by reference. A small direct-mapped table per thread: a miss (a new name, or two names that share a
/// slot) costs one string, as parsing did before; nothing is shared between threads, so nothing is locked.
/// </summary>
internal static class NameCache
{
    /// <summary>Slots per thread: a connection's working set of channels fits, and the table stays a few KiB.</summary>
    private const int Slots = 256;

    /// <summary>Longer names are not kept (a channel may have 255 bytes; most are far shorter).</summary>
    private const int MaxBytes = 96;

    [ThreadStatic]
    private static Entry[]? t_entries;

    /// <summary>The string of <paramref name="utf8"/> (unescaped UTF-8, as the frame holds it).</summary>
    public static string Get(ReadOnlySpan<byte> utf8)
    {
        if (utf8.Length > MaxBytes)
        {
            return Encoding.UTF8.GetString(utf8);
        }

        var hash = default(HashCode);
        hash.AddBytes(utf8);
        var entries = t_entries ??= new Entry[Slots];
        ref var entry = ref entries[hash.ToHashCode() & (Slots - 1)];
        if (entry.Utf8 is { } cached && utf8.SequenceEqual(cached))
        {
            return entry.Value!;
        }

        var value = Encoding.UTF8.GetString(utf8);
        entry = new Entry(utf8.ToArray(), value);
        return value;
    }

    private readonly record struct Entry(byte[]? Utf8, string? Value);
}

using System.Text;

namespace Relay.Core.Protocol;

/// <summary>
/// The channel and event names a thread has parsed lately: a client publishing to the same channels gets the same
/// string back instead of a new one per request (no allocation, no transcoding). A table of strings per thread in sets
/// of two, compared with the frame's bytes: a miss (a new name, or a third name of a set) costs the one string parsing
/// always cost; nothing is shared between threads, so nothing is locked.
/// </summary>
internal static class NameCache
{
    /// <summary>Slots per thread: 8 KiB of references, room for the channels many connections use at once.</summary>
    private const int Slots = 1024;

    /// <summary>Longer names are not kept (a channel may have 255 bytes; most are far shorter).</summary>
    private const int MaxBytes = 96;

    [ThreadStatic]
    private static string?[]? t_names;

    /// <summary>The string of <paramref name="utf8"/> (unescaped UTF-8, as the frame holds it).</summary>
    public static string Get(ReadOnlySpan<byte> utf8)
    {
        // Only ASCII names are kept: they compare with the frame's bytes as they are (others are rarer, and parsed as before).
        if (utf8.Length > MaxBytes || !Ascii.IsValid(utf8))
        {
            return Encoding.UTF8.GetString(utf8);
        }

        // Two ways per set: a channel and the event name published with it (the common pair) never evict each
        // other, whatever the process's hash seed makes of them (one way, they shared a slot one start in 1,024, and
        // then both were parsed again at every publish). A miss puts the name first and moves the first to second.
        var hash = default(HashCode);
        hash.AddBytes(utf8);
        var names = t_names ??= new string?[Slots];
        var set = hash.ToHashCode() & (Slots - 2);
        if (names[set] is { } first && Ascii.Equals(utf8, first))
        {
            return first;
        }

        if (names[set + 1] is { } second && Ascii.Equals(utf8, second))
        {
            return second;
        }

        names[set + 1] = names[set];
        return names[set] = Encoding.ASCII.GetString(utf8);
    }
}

using System.Text;

namespace Relay.Core.Channels;

/// <summary>Channel-name and pattern rules of the v1 protocol (spec "Names").</summary>
public static class ChannelName
{
    /// <summary>The most UTF-8 bytes a channel name or pattern may have.</summary>
    public const int MaxBytes = 255;

    /// <summary>
    /// Whether <paramref name="name"/> is a valid concrete channel name: 1-255 bytes of UTF-8, none of <c>+ # *</c>,
    /// no control characters, no empty level. When it is not, <paramref name="error"/> says what to change.
    /// </summary>
    public static bool IsValidName(string? name, out string error) => Validate(name, allowWildcards: false, allowEmptyLevels: false, out error);

    /// <summary>
    /// Whether <paramref name="pattern"/> is a valid subscription pattern: a valid name, or one where <c>+</c> is a
    /// whole level (matching exactly one level) and <c>#</c> is the whole last level (matching the levels before it
    /// and any number after, so <c>sport/#</c> matches <c>sport</c>). <c>*</c> is never allowed.
    /// When it is not valid, <paramref name="error"/> says what to change.
    /// </summary>
    public static bool IsValidPattern(string? pattern, out string error) => Validate(pattern, allowWildcards: true, allowEmptyLevels: false, out error);

    /// <summary>
    /// Whether <paramref name="topic"/> is a valid MQTT topic name for a channel: the rules of <see cref="IsValidName"/>
    /// except that levels may be empty (<c>/a</c>, <c>a//b</c>, <c>a/</c>), as MQTT allows. Such channels are served to
    /// MQTT clients and through patterns; the v1 protocol's requests name only channels without empty levels.
    /// </summary>
    public static bool IsValidTopicName(string? topic, out string error) => Validate(topic, allowWildcards: false, allowEmptyLevels: true, out error);

    /// <summary>
    /// Whether <paramref name="filter"/> is a valid MQTT topic filter: the rules of <see cref="IsValidPattern"/> except
    /// that levels may be empty (<c>/#</c>, <c>+/+</c> matching <c>/a</c>), as MQTT allows.
    /// </summary>
    public static bool IsValidTopicFilter(string? filter, out string error) => Validate(filter, allowWildcards: true, allowEmptyLevels: true, out error);

    /// <summary>Whether <paramref name="value"/> contains a wildcard level (a whole level <c>+</c> or <c>#</c>); it does not validate.</summary>
    public static bool IsPattern(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        for (var start = 0; start <= value.Length;)
        {
            var end = value.IndexOf('/', start);
            if (end < 0)
            {
                end = value.Length;
            }

            if (end - start == 1 && value[start] is '+' or '#')
            {
                return true;
            }

            start = end + 1;
        }

        return false;
    }

    /// <summary>
    /// Whether <paramref name="pattern"/> (a valid name, pattern or MQTT topic filter) matches <paramref name="channel"/>,
    /// as <see cref="PatternIndex{T}"/> matches: <c>+</c> one level (an empty one too), a last <c>#</c> the levels before
    /// it and any after, and no wildcard first level matches a name starting with <c>$</c>. Allocates nothing.
    /// </summary>
    public static bool PatternMatches(string pattern, string channel)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(channel);
        if (channel.Length == 0 || (channel[0] == '$' && pattern.Length > 0 && pattern[0] is '+' or '#' && (pattern.Length == 1 || pattern[1] == '/')))
        {
            return false;
        }

        int p = 0, c = 0;
        while (true)
        {
            var patternEnd = pattern.IndexOf('/', p);
            patternEnd = patternEnd < 0 ? pattern.Length : patternEnd;
            var level = pattern.AsSpan(p, patternEnd - p);
            if (level is "#")
            {
                return true;
            }

            if (c > channel.Length)
            {
                return false;
            }

            var channelEnd = channel.IndexOf('/', c);
            channelEnd = channelEnd < 0 ? channel.Length : channelEnd;
            if (level is not "+" && !level.SequenceEqual(channel.AsSpan(c, channelEnd - c)))
            {
                return false;
            }

            p = patternEnd + 1;
            c = channelEnd + 1;
            if (p > pattern.Length)
            {
                return c > channel.Length;
            }
        }
    }

    /// <summary>The namespace of a channel: the text before its first <c>:</c>, or empty when there is none.</summary>
    public static string NamespaceOf(string channel)
    {
        ArgumentNullException.ThrowIfNull(channel);
        var colon = channel.IndexOf(':', StringComparison.Ordinal);
        return colon <= 0 ? string.Empty : channel[..colon];
    }

    private static bool Validate(string? value, bool allowWildcards, bool allowEmptyLevels, out string error)
    {
        var what = (allowWildcards, allowEmptyLevels) switch
        {
            (true, true) => "topic filter",
            (false, true) => "topic name",
            (true, false) => "channel pattern",
            _ => "channel name",
        };
        if (value is null || value.Length == 0)
        {
            error = $"{what} is required and must not be empty";
            return false;
        }

        // Each char is at least one UTF-8 byte, so a longer string can be refused before scanning it.
        if (value.Length > MaxBytes)
        {
            error = TooLong(what, value);
            return false;
        }

        var bytes = 0;
        var levelStart = 0;
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
            {
                bytes += 4;
                i++;
                continue;
            }

            if (char.IsSurrogate(c))
            {
                error = $"{what} must be valid UTF-8, but has an unpaired surrogate U+{(int)c:X4} at position {i}";
                return false;
            }

            if (c <= '\u001F' || c is >= '\u007F' and <= '\u009F')
            {
                error = $"{what} must not contain control characters, but has U+{(int)c:X4} at position {i}";
                return false;
            }

            bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
            switch (c)
            {
                case '/':
                    if (i == levelStart && !allowEmptyLevels)
                    {
                        error = EmptyLevel(what, i);
                        return false;
                    }

                    levelStart = i + 1;
                    break;
                case '*':
                    error = allowWildcards
                        ? $"{what} must not contain '*'; use '+' for exactly one level or a last level '#' for any number of levels"
                        : $"{what} must not contain '+', '#' or '*'; use a pattern subscription for wildcards";
                    return false;
                case '+' or '#' when !allowWildcards:
                    error = $"{what} must not contain '+', '#' or '*'; use a pattern subscription for wildcards";
                    return false;
                case '+' when !IsWholeLevel(value, i):
                    error = $"'+' in a {what} must be a whole level (like 'a/+/b'), not part of one (position {i})";
                    return false;
                case '#' when !IsWholeLevel(value, i) || i != value.Length - 1:
                    error = $"'#' in a {what} must be the whole last level (like 'a/#'), at position {i} it is not";
                    return false;
            }
        }

        if (levelStart == value.Length && !allowEmptyLevels)
        {
            error = EmptyLevel(what, value.Length);
            return false;
        }

        if (bytes > MaxBytes)
        {
            error = TooLong(what, value);
            return false;
        }

        error = string.Empty;
        return true;
    }

    private static bool IsWholeLevel(string value, int i) =>
        (i == 0 || value[i - 1] == '/') && (i == value.Length - 1 || value[i + 1] == '/');

    private static string EmptyLevel(string what, int position) =>
        position == 0 ? $"{what} must not start with '/'; every level between '/' needs at least one character"
        : $"{what} has an empty level at position {position} ('//' or a trailing '/'); every level between '/' needs at least one character";

    private static string TooLong(string what, string value)
    {
        // GetByteCount counts an unpaired surrogate as its 3-byte replacement; close enough for the message.
        var bytes = Encoding.UTF8.GetByteCount(value);
        return $"{what} is {bytes} bytes of UTF-8; at most {MaxBytes} are allowed";
    }
}

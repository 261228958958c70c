namespace Relay.Client;

/// <summary>MQTT-style channel patterns: <c>+</c> matches one level, a final <c>#</c> any number of levels (also none).</summary>
internal static class Topics
{
    public static bool IsPattern(string channel) => channel.AsSpan().IndexOfAny('+', '#') >= 0;

    public static bool Matches(string pattern, string channel)
    {
        var p = pattern.AsSpan();
        var c = channel.AsSpan();
        while (true)
        {
            var pEnd = p.IndexOf('/');
            var pLevel = pEnd < 0 ? p : p[..pEnd];
            if (pLevel is "#")
            {
                return true;
            }

            var cEnd = c.IndexOf('/');
            var cLevel = cEnd < 0 ? c : c[..cEnd];
            if (pLevel is not "+" && !pLevel.SequenceEqual(cLevel))
            {
                return false;
            }

            if (pEnd < 0 || cEnd < 0)
            {
                // Both must end here, or the pattern may go on with a "#" that also matches the parent level.
                return (pEnd < 0 && cEnd < 0) || (cEnd < 0 && p[(pEnd + 1)..] is "#");
            }

            p = p[(pEnd + 1)..];
            c = c[(cEnd + 1)..];
        }
    }
}

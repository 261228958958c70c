namespace Relay.Core.Channels;

/// <summary>
/// Maps MQTT-style patterns (<c>+</c> one level, <c>#</c> any number of trailing levels) to subscribers,
/// and finds every subscriber whose pattern matches a channel. Thread-safe.
/// </summary>
/// <typeparam name="T">The subscriber type; compared by reference equality.</typeparam>
public sealed class PatternIndex<T> where T : class
{
    /// <summary>The number of (pattern, subscriber) pairs held.</summary>
    public int Count => throw new NotImplementedException();

    /// <summary>Adds <paramref name="subscriber"/> under <paramref name="pattern"/>; false when it was already there.</summary>
    public bool Add(string pattern, T subscriber) => throw new NotImplementedException();

    /// <summary>Removes <paramref name="subscriber"/> from <paramref name="pattern"/>; false when it was not there.</summary>
    public bool Remove(string pattern, T subscriber) => throw new NotImplementedException();

    /// <summary>Appends to <paramref name="results"/> each subscriber with a pattern matching <paramref name="channel"/> (once per matching pattern).</summary>
    public void Match(string channel, List<T> results) => throw new NotImplementedException();
}

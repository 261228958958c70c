namespace Relay.Core.Auth;

/// <summary>
/// Whether a set of capability globs matches every channel a subscription pattern can match: the pattern and the
/// globs are small automata over the characters they name plus one stand-in for every other character, and a
/// breadth-first walk of their product looks for a channel the pattern matches and no glob does.
/// </summary>
/// <remarks>
/// Exact for the pattern's language as <see cref="Channels.PatternIndex"/> matches it (<c>+</c> one level, a last
/// <c>#</c> the level before it and any number after), so globs that only cover a pattern together count:
/// <c>sport</c> plus <c>sport/*</c> covers <c>sport/#</c>. The automaton takes levels of at least one character; MQTT
/// topic names may also have empty ones, which need no states of their own: a glob matching a name with a character no
/// glob names in a level matches it through a <c>*</c>, and that <c>*</c> matches the name with the level empty too.
/// The walk is capped; past the cap the answer is "not covered".
/// </remarks>
internal static class PatternCoverage
{
    /// <summary>Product states explored before giving up (refusing). Real capability maps need a few dozen.</summary>
    private const int MaxStates = 4096;

    /// <summary>The symbol for every character that no glob or pattern names (a valid channel character).</summary>
    private const int Other = -1;

    /// <summary>Whether every channel matched by <paramref name="pattern"/> (a valid pattern) is matched by one of <paramref name="globs"/>.</summary>
    public static bool Covers(IReadOnlyList<string> globs, string pattern)
    {
        if (globs.Count == 0)
        {
            return false;
        }

        var matcher = PatternAutomaton.Build(pattern);
        var globAutomaton = new GlobAutomaton(globs);
        var symbols = Alphabet(globs, pattern);

        var start = (Pattern: matcher.Start(), Globs: globAutomaton.Start());
        var seen = new HashSet<(StateSet, StateSet)> { start };
        var queue = new Queue<(StateSet Pattern, StateSet Globs)>();
        queue.Enqueue(start);
        while (queue.TryDequeue(out var state))
        {
            if (matcher.Accepts(state.Pattern) && !globAutomaton.Accepts(state.Globs))
            {
                return false;
            }

            foreach (var symbol in symbols)
            {
                var pattern2 = matcher.Step(state.Pattern, symbol);
                if (pattern2.IsEmpty)
                {
                    continue;
                }

                var next = (pattern2, globAutomaton.Step(state.Globs, symbol));
                if (seen.Add(next))
                {
                    if (seen.Count > MaxStates)
                    {
                        return false;
                    }

                    queue.Enqueue(next);
                }
            }
        }

        return true;
    }

    // '/', every character a glob or the pattern names that a channel may contain, and one stand-in for the rest.
    private static List<int> Alphabet(IReadOnlyList<string> globs, string pattern)
    {
        var named = new HashSet<int> { '/' };
        foreach (var glob in globs)
        {
            foreach (var c in glob)
            {
                if (IsChannelCharacter(c))
                {
                    named.Add(c);
                }
            }
        }

        foreach (var c in pattern)
        {
            if (IsChannelCharacter(c))
            {
                named.Add(c);
            }
        }

        return [.. named, Other];
    }

    // Characters a channel name never has: wildcards and control characters (ChannelName's rules).
    private static bool IsChannelCharacter(char c) =>
        c is not ('+' or '#' or '*') && c > '\u001F' && c is < '\u007F' or > '\u009F';

    /// <summary>The pattern as a tiny NFA: states with a literal edge, a "one level character" edge, and a '/' edge.</summary>
    private sealed class PatternAutomaton
    {
        private readonly List<(int Literal, int Next)>[] _edges;
        private readonly bool[] _accepting;

        private PatternAutomaton(List<(int Literal, int Next)>[] edges, bool[] accepting)
        {
            _edges = edges;
            _accepting = accepting;
        }

        /// <summary>An edge label: any character of a level (anything but '/').</summary>
        private const int LevelCharacter = -2;

        public static PatternAutomaton Build(string pattern)
        {
            var edges = new List<List<(int Literal, int Next)>> { new() };
            var accepting = new List<bool> { false };
            int NewState()
            {
                edges.Add([]);
                accepting.Add(false);
                return edges.Count - 1;
            }

            var levels = pattern.Split('/');
            var end = 0;
            for (var i = 0; i < levels.Length; i++)
            {
                var level = levels[i];
                if (level == "#")
                {
                    // '#' matches the levels before it (so the end of the previous level accepts) and any number after.
                    var first = i == 0 ? end : NewState();
                    if (i > 0)
                    {
                        accepting[end] = true;
                        edges[end].Add(('/', first));
                    }

                    var inLevel = NewState();
                    edges[first].Add((LevelCharacter, inLevel));
                    edges[inLevel].Add((LevelCharacter, inLevel));
                    edges[inLevel].Add(('/', first));
                    accepting[inLevel] = true;
                    return new([.. edges], [.. accepting]);
                }

                var at = end;
                if (i > 0)
                {
                    at = NewState();
                    edges[end].Add(('/', at));
                }

                if (level == "+")
                {
                    var inLevel = NewState();
                    edges[at].Add((LevelCharacter, inLevel));
                    edges[inLevel].Add((LevelCharacter, inLevel));
                    end = inLevel;
                    continue;
                }

                foreach (var c in level)
                {
                    var next = NewState();
                    edges[at].Add((c, next));
                    at = next;
                }

                end = at;
            }

            accepting[end] = true;
            return new([.. edges], [.. accepting]);
        }

        public StateSet Start() => StateSet.Of(_edges.Length, 0);

        public bool Accepts(StateSet states)
        {
            foreach (var state in states)
            {
                if (_accepting[state])
                {
                    return true;
                }
            }

            return false;
        }

        public StateSet Step(StateSet states, int symbol)
        {
            var next = StateSet.Empty(_edges.Length);
            foreach (var state in states)
            {
                foreach (var (literal, target) in _edges[state])
                {
                    if (literal == symbol || (literal == LevelCharacter && symbol != '/'))
                    {
                        next.Add(target);
                    }
                }
            }

            return next;
        }
    }

    /// <summary>Every glob as positions in one array: at a '*' a glob stays or moves on, elsewhere it needs the character.</summary>
    private sealed class GlobAutomaton
    {
        private readonly string[] _globs;
        private readonly int[] _offsets;
        private readonly int _size;

        public GlobAutomaton(IReadOnlyList<string> globs)
        {
            _globs = [.. globs];
            _offsets = new int[_globs.Length];
            for (var i = 0; i < _globs.Length; i++)
            {
                _offsets[i] = _size;
                _size += _globs[i].Length + 1;
            }
        }

        public StateSet Start()
        {
            var start = StateSet.Empty(_size);
            for (var i = 0; i < _globs.Length; i++)
            {
                AddClosed(start, i, 0);
            }

            return start;
        }

        public bool Accepts(StateSet states)
        {
            for (var i = 0; i < _globs.Length; i++)
            {
                if (states.Contains(_offsets[i] + _globs[i].Length))
                {
                    return true;
                }
            }

            return false;
        }

        public StateSet Step(StateSet states, int symbol)
        {
            var next = StateSet.Empty(_size);
            var glob = 0;
            foreach (var state in states)
            {
                while (glob + 1 < _globs.Length && state >= _offsets[glob + 1])
                {
                    glob++;
                }

                var text = _globs[glob];
                var at = state - _offsets[glob];
                if (at == text.Length)
                {
                    continue;
                }

                if (text[at] == '*')
                {
                    AddClosed(next, glob, at);
                }
                else if (text[at] == symbol)
                {
                    AddClosed(next, glob, at + 1);
                }
            }

            return next;
        }

        // A position and every position reachable from it over '*' (which may match nothing).
        private void AddClosed(StateSet set, int glob, int at)
        {
            var text = _globs[glob];
            set.Add(_offsets[glob] + at);
            while (at < text.Length && text[at] == '*')
            {
                set.Add(_offsets[glob] + ++at);
            }
        }
    }

    /// <summary>A set of automaton states as bits, compared by value.</summary>
    private readonly struct StateSet : IEquatable<StateSet>
    {
        private readonly ulong[] _bits;

        private StateSet(ulong[] bits) => _bits = bits;

        public bool IsEmpty => Array.TrueForAll(_bits, static word => word == 0);

        public static StateSet Empty(int size) => new(new ulong[(size + 63) / 64]);

        public static StateSet Of(int size, int state)
        {
            var set = Empty(size);
            set.Add(state);
            return set;
        }

        public void Add(int state) => _bits[state >> 6] |= 1UL << (state & 63);

        public bool Contains(int state) => (_bits[state >> 6] & (1UL << (state & 63))) != 0;

        public Enumerator GetEnumerator() => new(_bits);

        public bool Equals(StateSet other) => _bits.AsSpan().SequenceEqual(other._bits);

        public override bool Equals(object? obj) => obj is StateSet other && Equals(other);

        public override int GetHashCode()
        {
            var hash = new HashCode();
            foreach (var word in _bits)
            {
                hash.Add(word);
            }

            return hash.ToHashCode();
        }

        /// <summary>The states in ascending order.</summary>
        public struct Enumerator(ulong[] bits)
        {
            private int _word;
            private ulong _rest = bits.Length > 0 ? bits[0] : 0;

            public int Current { get; private set; }

            public bool MoveNext()
            {
                while (_rest == 0)
                {
                    if (++_word >= bits.Length)
                    {
                        return false;
                    }

                    _rest = bits[_word];
                }

                var bit = System.Numerics.BitOperations.TrailingZeroCount(_rest);
                _rest &= _rest - 1;
                Current = (_word * 64) + bit;
                return true;
            }
        }
    }
}

using BenchmarkDotNet.Attributes;
using Relay.Core.Channels;

namespace Relay.Bench.Micro.Benchmarks;

/// <summary>
/// <see cref="PatternIndex{T}"/> holding <see cref="Patterns"/> patterns over four-level channels
/// (<c>ns/group/item/field</c>): half exact names, 30% with one <c>+</c> level, 20% ending in <c>#</c> after two or three levels, each with its own
/// subscriber. Matching walks the trie levels of the channel, so its cost follows the channel's depth and the number
/// of matches, not the number of patterns.
/// </summary>
[MemoryDiagnoser]
public class PatternIndexBenchmarks
{
    /// <summary>The channel matched; <see cref="Setup"/> makes sure some patterns of every kind match it.</summary>
    public const string Channel = "ns3/g17/i42/f5";

    private readonly List<Subscriber> _results = new(64);
    private PatternIndex<Subscriber> _index = null!;
    private Subscriber _extra = null!;

    [Params(100_000)]
    public int Patterns { get; set; }

    /// <summary>How many subscribers <see cref="Channel"/> matches (written by <see cref="Setup"/>).</summary>
    public int Matches { get; private set; }

    [GlobalSetup]
    public void Setup()
    {
        _index = new PatternIndex<Subscriber>();
        var random = new Random(42);
        foreach (var pattern in Generate(random, Patterns - 6))
        {
            _index.Add(pattern, new Subscriber());
        }

        // A few certain matches of each kind, so the match does real work whatever the random mix holds.
        foreach (var pattern in (string[])[Channel, "ns3/+/i42/f5", "ns3/g17/+/f5", "ns3/g17/i42/+", "ns3/#", "ns3/g17/#"])
        {
            _index.Add(pattern, new Subscriber());
        }

        _index.Match(Channel, _results);
        Matches = _results.Count;
        _results.Clear();
        _extra = new Subscriber();
    }

    /// <summary>Every subscriber of a pattern matching one concrete channel (results into a reused list).</summary>
    [Benchmark]
    public int Match()
    {
        _results.Clear();
        _index.Match(Channel, _results);
        return _results.Count;
    }

    /// <summary>A channel whose first level no literal pattern has: only the <c>+</c> branch at the root is walked.</summary>
    [Benchmark]
    public int MatchMiss()
    {
        _results.Clear();
        _index.Match("nomatch/g1/i1/f1", _results);
        return _results.Count;
    }

    /// <summary>Adding and removing a subscriber on a pattern whose trie nodes exist (copy-on-write subscriber arrays).</summary>
    [Benchmark]
    public bool AddRemoveExistingPattern() => _index.Add("ns3/g17/+/f5", _extra) & _index.Remove("ns3/g17/+/f5", _extra);

    /// <summary>Adding and removing a pattern on a new branch (nodes created, then pruned).</summary>
    [Benchmark]
    public bool AddRemoveNewBranch() => _index.Add("fresh/branch/+/leaf", _extra) & _index.Remove("fresh/branch/+/leaf", _extra);

    private static IEnumerable<string> Generate(Random random, int count)
    {
        for (var i = 0; i < count; i++)
        {
            string[] levels = [$"ns{random.Next(10)}", $"g{random.Next(100)}", $"i{random.Next(100)}", $"f{random.Next(10)}"];
            var kind = random.Next(10);
            if (kind < 5)
            {
                yield return string.Join('/', levels);
            }
            else if (kind < 8)
            {
                levels[random.Next(levels.Length)] = "+";
                yield return string.Join('/', levels);
            }
            else
            {
                var keep = random.Next(2, levels.Length);
                yield return string.Join('/', levels.Take(keep)) + "/#";
            }
        }
    }

    /// <summary>A subscriber: compared by reference, as connections are.</summary>
    public sealed class Subscriber;
}

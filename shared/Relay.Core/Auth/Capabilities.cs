using System.Text;
using System.Text.Json;
using Relay.Core.Channels;

namespace Relay.Core.Auth;

/// <summary>
/// A map from channel glob (<c>*</c> matches any run of characters) to the operations it grants.
/// An operation is allowed on a channel when any glob that matches the channel lists it, and on a subscription
/// pattern when globs that list it match every channel the pattern can match.
/// Immutable; a token's capabilities are combined with its key's through <see cref="Intersect"/>: the result
/// keeps both glob maps as layers, and an operation is allowed only when every layer allows it.
/// </summary>
public sealed class Capabilities
{
    private readonly KeyValuePair<string, Operations>[] _entries;
    private readonly KeyValuePair<string, Operations>[][] _ceilings;

    private Capabilities(KeyValuePair<string, Operations>[] entries, KeyValuePair<string, Operations>[][]? ceilings)
    {
        _entries = entries;
        _ceilings = ceilings ?? [];
    }

    /// <summary>Every operation on every channel.</summary>
    public static Capabilities AllowAll { get; } = new([new("*", Operations.All)], null);

    /// <summary>Nothing at all.</summary>
    public static Capabilities None { get; } = new([], null);

    /// <summary>The globs and their operations, as given (ceilings added by <see cref="Intersect"/> are not listed).</summary>
    public IReadOnlyList<KeyValuePair<string, Operations>> Entries => _entries;

    /// <summary>Builds capabilities from globs and operations.</summary>
    public static Capabilities From(IEnumerable<KeyValuePair<string, Operations>> entries)
    {
        ArgumentNullException.ThrowIfNull(entries);
        return new([.. entries], null);
    }

    /// <summary>The capabilities allowed by both: what <paramref name="requested"/> grants, clipped to <paramref name="ceiling"/>.</summary>
    public static Capabilities Intersect(Capabilities requested, Capabilities ceiling)
    {
        ArgumentNullException.ThrowIfNull(requested);
        ArgumentNullException.ThrowIfNull(ceiling);
        if (ReferenceEquals(ceiling, AllowAll))
        {
            return requested;
        }

        // Every layer of both stays: chained clipping can only narrow.
        return new(requested._entries, [.. requested._ceilings, ceiling._entries, .. ceiling._ceilings]);
    }

    /// <summary>
    /// The operations allowed on <paramref name="channel"/>. For a subscription pattern (<c>+</c> or <c>#</c> levels), the
    /// operations allowed on every channel the pattern can match: <c>sport/#</c> also matches <c>sport</c>, so
    /// <c>sport/*</c> alone grants nothing on it. A glob's own <c>+</c> and <c>#</c> are plain characters.
    /// </summary>
    public Operations OperationsFor(string channel)
    {
        ArgumentNullException.ThrowIfNull(channel);
        return ChannelName.IsPattern(channel) ? PatternOperations(channel, Operations.All) : ChannelOperations(channel);
    }

    private Operations ChannelOperations(string channel)
    {
        var ops = LayerOperations(_entries, channel);
        foreach (var ceiling in _ceilings)
        {
            if (ops == Operations.None)
            {
                break;
            }

            ops &= LayerOperations(ceiling, channel);
        }

        return ops;
    }

    // Each operation on its own: the globs that cover a pattern for subscribe need not be those that do for history.
    private Operations PatternOperations(string pattern, Operations wanted)
    {
        var ops = Operations.None;
        for (var operation = Operations.Subscribe; operation <= Operations.History; operation = (Operations)((int)operation << 1))
        {
            if ((wanted & operation) != 0
                && LayerCovers(_entries, pattern, operation) && Array.TrueForAll(_ceilings, layer => LayerCovers(layer, pattern, operation)))
            {
                ops |= operation;
            }
        }

        return ops;
    }

    // Whether the globs of one layer that grant the operation match, together, every channel of the pattern.
    private static bool LayerCovers(KeyValuePair<string, Operations>[] layer, string pattern, Operations operation)
    {
        var globs = new List<string>(layer.Length);
        foreach (var (glob, granted) in layer)
        {
            if ((granted & operation) != 0)
            {
                globs.Add(glob);
            }
        }

        return PatternCoverage.Covers(globs, pattern);
    }

    private static Operations LayerOperations(KeyValuePair<string, Operations>[] layer, string channel)
    {
        var ops = Operations.None;
        foreach (var (glob, granted) in layer)
        {
            if ((ops & granted) != granted && GlobMatches(glob, channel))
            {
                ops |= granted;
            }
        }

        return ops;
    }

    /// <summary>Whether every operation in <paramref name="operation"/> is allowed on <paramref name="channel"/>.</summary>
    public bool Allows(string channel, Operations operation)
    {
        ArgumentNullException.ThrowIfNull(channel);
        var ops = ChannelName.IsPattern(channel) ? PatternOperations(channel, operation) : ChannelOperations(channel);
        return (ops & operation) == operation;
    }

    /// <summary>
    /// Whether everything these capabilities grant is also granted by <paramref name="other"/>:
    /// each glob's operations are covered by globs of <paramref name="other"/> that match every channel the glob matches.
    /// </summary>
    public bool IsSubsetOf(Capabilities other)
    {
        ArgumentNullException.ThrowIfNull(other);

        // Everything granted here must fit every layer of the other; one of our layers fitting is enough
        // (a sufficient test: an intersection of layers may fit where no single layer does).
        if (!FitsLayer(other._entries))
        {
            return false;
        }

        foreach (var ceiling in other._ceilings)
        {
            if (!FitsLayer(ceiling))
            {
                return false;
            }
        }

        return true;
    }

    private bool FitsLayer(KeyValuePair<string, Operations>[] layer)
    {
        if (LayerWithin(_entries, layer))
        {
            return true;
        }

        foreach (var ceiling in _ceilings)
        {
            if (LayerWithin(ceiling, layer))
            {
                return true;
            }
        }

        return false;
    }

    private static bool LayerWithin(KeyValuePair<string, Operations>[] inner, KeyValuePair<string, Operations>[] outer)
    {
        foreach (var (glob, granted) in inner)
        {
            var covered = Operations.None;
            foreach (var (otherGlob, otherOps) in outer)
            {
                if (GlobCovers(otherGlob, glob))
                {
                    covered |= otherOps;
                }
            }

            if ((covered & granted) != granted)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Whether <paramref name="glob"/> matches <paramref name="channel"/>; <c>*</c> matches any run of characters.</summary>
    public static bool GlobMatches(string glob, string channel) => Match(glob, channel, textWildcards: false);

    /// <summary>Whether every channel matched by <paramref name="inner"/> is matched by <paramref name="outer"/>.</summary>
    public static bool GlobCovers(string outer, string inner) => Match(outer, inner, textWildcards: true);

    // Greedy matcher with one backtrack point: linear in practice, O(n*m) at worst for 255-byte names.
    // With textWildcards, a '*' in the text stands for "any run", so only a '*' in the glob may absorb it.
    private static bool Match(string glob, string text, bool textWildcards)
    {
        int g = 0, t = 0, starG = -1, starT = 0;
        while (t < text.Length)
        {
            if (g < glob.Length && glob[g] == '*')
            {
                starG = g++;
                starT = t;
            }
            else if (g < glob.Length && glob[g] == text[t] && !(textWildcards && text[t] == '*'))
            {
                g++;
                t++;
            }
            else if (starG >= 0)
            {
                g = starG + 1;
                t = ++starT;
            }
            else
            {
                return false;
            }
        }

        while (g < glob.Length && glob[g] == '*')
        {
            g++;
        }

        return g == glob.Length;
    }

    /// <summary>Parses <c>{"glob":["subscribe","publish"],…}</c>; <c>"*"</c> as an operation means all of them.</summary>
    public static bool TryParse(JsonElement json, out Capabilities capabilities, out string error)
    {
        capabilities = None;
        if (json.ValueKind != JsonValueKind.Object)
        {
            error = "capabilities must be a JSON object mapping channel globs to lists of operations";
            return false;
        }

        var entries = new List<KeyValuePair<string, Operations>>();
        foreach (var property in json.EnumerateObject())
        {
            if (property.Name.Length == 0 || Encoding.UTF8.GetByteCount(property.Name) > 255)
            {
                error = "a capability glob must be 1-255 UTF-8 bytes";
                return false;
            }

            if (property.Value.ValueKind != JsonValueKind.Array)
            {
                error = $"capability '{property.Name}' must list its operations in an array";
                return false;
            }

            var ops = Operations.None;
            foreach (var item in property.Value.EnumerateArray())
            {
                var op = item.ValueKind == JsonValueKind.String ? ParseOperation(item.GetString()!) : (Operations?)null;
                if (op is null)
                {
                    error = $"capability '{property.Name}' lists an unknown operation {item.GetRawText()}; use subscribe, publish, presence, history or *";
                    return false;
                }

                ops |= op.Value;
            }

            entries.Add(new(property.Name, ops));
        }

        capabilities = new([.. entries], null);
        error = string.Empty;
        return true;
    }

    /// <summary>Parses capabilities from JSON text; throws <see cref="FormatException"/> with the reason.</summary>
    public static Capabilities Parse(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            return TryParse(doc.RootElement, out var caps, out var error) ? caps : throw new FormatException(error);
        }
        catch (JsonException ex)
        {
            throw new FormatException("capabilities are not valid JSON: " + ex.Message, ex);
        }
    }

    /// <summary>Parses one operation name.</summary>
    public static Operations? ParseOperation(string name) => name switch
    {
        "subscribe" => Operations.Subscribe,
        "publish" => Operations.Publish,
        "presence" => Operations.Presence,
        "history" => Operations.History,
        "*" => Operations.All,
        _ => null,
    };

    /// <summary>Writes the capabilities as the JSON object they were parsed from (ceilings are not written).</summary>
    public void WriteTo(Utf8JsonWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.WriteStartObject();
        foreach (var (glob, ops) in _entries)
        {
            writer.WriteStartArray(glob);
            if (ops.HasFlag(Operations.Subscribe)) writer.WriteStringValue("subscribe");
            if (ops.HasFlag(Operations.Publish)) writer.WriteStringValue("publish");
            if (ops.HasFlag(Operations.Presence)) writer.WriteStringValue("presence");
            if (ops.HasFlag(Operations.History)) writer.WriteStringValue("history");
            writer.WriteEndArray();
        }

        writer.WriteEndObject();
    }

    /// <summary>The JSON text of <see cref="WriteTo"/>.</summary>
    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            WriteTo(writer);
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <inheritdoc />
    public override string ToString() => ToJson();
}

using System.Collections.Frozen;

namespace Relay.Functions.Hooks;

/// <summary>An immutable table from namespace to hooks; looking a channel up allocates nothing.</summary>
internal sealed class HookTable
{
    private readonly FrozenDictionary<string, NamespaceHooks?> _rules;
    private readonly FrozenDictionary<string, NamespaceHooks?>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly NamespaceHooks? _default;

    public HookTable(FunctionsOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _default = Resolve(string.Empty, options.Defaults, null);
        _rules = options.Namespaces.ToFrozenDictionary(static r => r.Key, r => Resolve(r.Key, r.Value, options.Defaults), StringComparer.Ordinal);
        _lookup = _rules.GetAlternateLookup<ReadOnlySpan<char>>();
        Any = _default is not null || _rules.Values.Any(static h => h is not null);
    }

    /// <summary>Whether any namespace has a hook.</summary>
    public bool Any { get; }

    /// <summary>The hooks of <paramref name="channel"/>'s namespace; null when it has none.</summary>
    public NamespaceHooks? For(string channel)
    {
        if (_rules.Count == 0)
        {
            return _default;
        }

        var colon = channel.IndexOf(':', StringComparison.Ordinal);
        return colon >= 0 && _lookup.TryGetValue(channel.AsSpan(0, colon), out var hooks) ? hooks : _default;
    }

    private static NamespaceHooks? Resolve(string name, FunctionNamespaceOptions options, FunctionNamespaceOptions? fallback)
    {
        var before = Hook(name, options.BeforePublish, fallback?.BeforePublish);
        var after = Hook(name, options.AfterPublish, fallback?.AfterPublish);
        return before is null && after is null ? null : new NamespaceHooks(before, after);
    }

    private static ResolvedHook? Hook(string name, HookOptions? options, HookOptions? fallback)
    {
        var target = options?.Target ?? fallback?.Target;
        if (string.IsNullOrEmpty(target) || string.Equals(target, HookOptions.Off, StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        // The validator ran first: the target parses.
        HookTarget.TryParse(target, out var parsed, out _);
        return new ResolvedHook(
            name,
            parsed!,
            options?.Timeout ?? fallback?.Timeout ?? HookOptions.DefaultTimeout,
            (options?.OnFailure ?? fallback?.OnFailure ?? HookFailureMode.Closed) == HookFailureMode.Open);
    }
}

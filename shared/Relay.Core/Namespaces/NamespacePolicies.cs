using System.Collections.Frozen;
using Relay.Core.Channels;

namespace Relay.Core.Namespaces;

/// <summary>An immutable table from namespace to resolved policy; looking a channel up allocates nothing.</summary>
public sealed class NamespacePolicies
{
    private readonly FrozenDictionary<string, NamespacePolicy> _rules;
    private readonly FrozenDictionary<string, NamespacePolicy>.AlternateLookup<ReadOnlySpan<char>> _lookup;

    /// <summary>Resolves every rule against the defaults.</summary>
    public NamespacePolicies(NamespacesOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Default = Resolve(string.Empty, options.Defaults, null);
        _rules = options.Rules.ToFrozenDictionary(static r => r.Key, r => Resolve(r.Key, r.Value, Default), StringComparer.Ordinal);
        _lookup = _rules.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>The policy of channels whose namespace has no rule.</summary>
    public NamespacePolicy Default { get; }

    /// <summary>The policy of <paramref name="channel"/>'s namespace.</summary>
    public NamespacePolicy For(string channel)
    {
        ArgumentNullException.ThrowIfNull(channel);
        if (_rules.Count == 0)
        {
            return Default;
        }

        var colon = channel.IndexOf(':', StringComparison.Ordinal);
        return colon >= 0 && _lookup.TryGetValue(channel.AsSpan(0, colon), out var policy) ? policy : Default;
    }

    /// <summary>Problems with the options, in words a user can act on (empty when valid).</summary>
    public static List<string> Validate(NamespacesOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        Check("Defaults", options.Defaults, failures);
        foreach (var (name, rule) in options.Rules)
        {
            if (name.Length == 0 || name.Contains(':', StringComparison.Ordinal) || !ChannelName.IsValidName(name, out _))
            {
                failures.Add($"Relay:Namespaces:Rules:{name} is not a namespace name: use the text before a channel's first ':' (no ':', '+', '#', '*').");
            }

            Check("Rules:" + name, rule, failures);
        }

        return failures;
    }

    private static void Check(string path, NamespaceOptions options, List<string> failures)
    {
        if (options.HistorySize is < 0 or > 1_000_000)
        {
            failures.Add($"Relay:Namespaces:{path}:HistorySize is {options.HistorySize}; set it between 0 (history off) and 1000000.");
        }

        if (options.HistoryTtl is { } ttl && ttl <= TimeSpan.Zero)
        {
            failures.Add($"Relay:Namespaces:{path}:HistoryTtl is {ttl}; set a positive duration such as 00:05:00.");
        }

        if (options.MaxSubscribers is < 1)
        {
            failures.Add($"Relay:Namespaces:{path}:MaxSubscribers is {options.MaxSubscribers}; set it to 1 or more.");
        }

        if (options.MaxPresenceMembers is < 1)
        {
            failures.Add($"Relay:Namespaces:{path}:MaxPresenceMembers is {options.MaxPresenceMembers}; set it to 1 or more (Presence=false turns presence off).");
        }
    }

    private static NamespacePolicy Resolve(string name, NamespaceOptions options, NamespacePolicy? fallback) => new(
        name,
        options.HistorySize ?? fallback?.HistorySize ?? NamespacePolicy.DefaultHistorySize,
        options.HistoryTtl ?? fallback?.HistoryTtl ?? NamespacePolicy.DefaultHistoryTtl,
        options.Presence ?? fallback?.Presence ?? true,
        options.Recovery ?? fallback?.Recovery ?? true,
        options.ClientPublish ?? fallback?.ClientPublish ?? true,
        options.MaxSubscribers ?? fallback?.MaxSubscribers ?? NamespacePolicy.DefaultMaxSubscribers,
        options.MaxPresenceMembers ?? fallback?.MaxPresenceMembers ?? NamespacePolicy.DefaultMaxPresenceMembers);
}

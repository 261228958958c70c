namespace Relay.Core.Namespaces;

/// <summary>Per-namespace options, bound from <c>Relay:Namespaces</c>: <c>Defaults</c> and <c>Rules:{namespace}</c>.</summary>
public sealed class NamespacesOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "Relay:Namespaces";

    /// <summary>What every namespace gets unless its rule says otherwise.</summary>
    public NamespaceOptions Defaults { get; set; } = new();

    /// <summary>Rules by namespace (the text before a channel's first <c>:</c>).</summary>
    public Dictionary<string, NamespaceOptions> Rules { get; set; } = new(StringComparer.Ordinal);
}

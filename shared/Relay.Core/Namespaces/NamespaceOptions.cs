namespace Relay.Core.Namespaces;

/// <summary>Settings of one namespace; an unset value falls back to <c>Relay:Namespaces:Defaults</c>, then to built-in defaults.</summary>
public sealed class NamespaceOptions
{
    /// <summary>Messages kept per channel (0: no history, so no recovery).</summary>
    public int? HistorySize { get; set; }

    /// <summary>How long messages are kept.</summary>
    public TimeSpan? HistoryTtl { get; set; }

    /// <summary>Whether presence is on.</summary>
    public bool? Presence { get; set; }

    /// <summary>Whether <c>since</c> recovers missed messages (off: always <c>recovered: false</c>).</summary>
    public bool? Recovery { get; set; }

    /// <summary>Whether clients (realtime connections and token holders) may publish; server keys always may.</summary>
    public bool? ClientPublish { get; set; }

    /// <summary>The most subscribers one channel may have on a node.</summary>
    public int? MaxSubscribers { get; set; }

    /// <summary>The most presence members (connections present) one channel may have, across every node.</summary>
    public int? MaxPresenceMembers { get; set; }
}

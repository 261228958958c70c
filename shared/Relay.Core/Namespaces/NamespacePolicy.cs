namespace Relay.Core.Namespaces;

/// <summary>The resolved settings of one namespace.</summary>
/// <param name="Name">The namespace (empty for channels without one).</param>
/// <param name="HistorySize">Messages kept per channel.</param>
/// <param name="HistoryTtl">How long messages are kept.</param>
/// <param name="Presence">Whether presence is on.</param>
/// <param name="Recovery">Whether <c>since</c> recovers.</param>
/// <param name="ClientPublish">Whether clients may publish.</param>
/// <param name="MaxSubscribers">The most subscribers per channel on a node.</param>
/// <param name="MaxPresenceMembers">The most presence members per channel.</param>
public sealed record NamespacePolicy(string Name, int HistorySize, TimeSpan HistoryTtl, bool Presence, bool Recovery, bool ClientPublish, int MaxSubscribers, int MaxPresenceMembers)
{
    /// <summary>Built-in: enough history for a reconnecting client to catch up on a busy channel.</summary>
    public const int DefaultHistorySize = 200;

    /// <summary>Built-in: covers a phone switching networks or a laptop waking up.</summary>
    public static readonly TimeSpan DefaultHistoryTtl = TimeSpan.FromMinutes(5);

    /// <summary>Built-in: large rooms are fine; a limit protects a node from one runaway channel.</summary>
    public const int DefaultMaxSubscribers = 1_000_000;

    /// <summary>
    /// Built-in: a presence set is a list people look at (Pusher stops at 100 members, Ably caps it per channel too); 1,000
    /// keeps a get to ~4 MB at the default data size, and every enter goes to every subscriber.
    /// </summary>
    public const int DefaultMaxPresenceMembers = 1000;
}

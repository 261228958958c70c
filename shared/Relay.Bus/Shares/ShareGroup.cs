namespace Relay.Bus.Shares;

/// <summary>A shared subscription's group: its app, name and topic filter (the filter after <c>$share/{group}/</c>).</summary>
public readonly record struct ShareGroup(string App, string Name, string Filter);

namespace Relay.Bus.FanOut;

/// <summary>An ingress node's interest in a channel or pattern changed: it now holds <see cref="Subscribers"/> local subscribers (0 = none).</summary>
public sealed record InterestChange(string NodeId, string App, string ChannelOrPattern, int Subscribers);

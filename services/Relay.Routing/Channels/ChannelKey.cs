namespace Relay.Routing.Channels;

/// <summary>A channel of an app: the unit of ordering.</summary>
internal readonly record struct ChannelKey(string App, string Channel);

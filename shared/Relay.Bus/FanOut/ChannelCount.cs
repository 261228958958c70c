namespace Relay.Bus.FanOut;

/// <summary>A channel with subscribers, and how many across all nodes.</summary>
public readonly record struct ChannelCount(string Channel, int Subscribers);

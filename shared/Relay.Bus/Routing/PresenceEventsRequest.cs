namespace Relay.Bus.Routing;

/// <summary>
/// Read a channel's presence events after number <see cref="AfterSeq"/> (<see cref="Relay.Core.Messages.ChannelPosition.PresenceSeq"/>),
/// oldest first, for a node that missed some. Answered with a <see cref="HistoryReply"/> whose messages are the events
/// (each numbered in <c>Seq</c>) and whose position carries the channel's last presence number; an engine that does
/// not keep presence events answers with none and <c>Complete</c> false.
/// </summary>
public sealed record PresenceEventsRequest(string App, string Channel, long AfterSeq, int Limit) : RoutingRequest(App, Channel);

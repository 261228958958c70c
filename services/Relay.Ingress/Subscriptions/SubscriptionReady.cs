using Relay.Core.Messages;

namespace Relay.Ingress.Subscriptions;

/// <summary>
/// Called once a subscription is ready, before any recovered or live message is sent: with the channel's position
/// and whether <c>since</c> was recovered, or a null position for a pattern.
/// </summary>
internal delegate void SubscriptionReady(string channel, ChannelPosition? position, bool recovered);

namespace Relay.Functions.Webhooks;

/// <summary>The event types a webhook may ask for (the <c>type</c> of its bodies).</summary>
public static class WebhookEventTypes
{
    /// <summary>A channel got its first subscriber (on any node).</summary>
    public const string Occupied = "channel.occupied";

    /// <summary>A channel lost its last subscriber.</summary>
    public const string Vacated = "channel.vacated";

    /// <summary>A presence enter, update or leave.</summary>
    public const string Presence = "presence";

    /// <summary>A sequenced message.</summary>
    public const string Message = "message";

    internal const string Describe = "'channel.occupied', 'channel.vacated', 'presence' or 'message'";

    internal static bool IsKnown(string type) => type is Occupied or Vacated or Presence or Message;
}

namespace Relay.Pusher;

/// <summary>One receiver of an app's Pusher webhooks: <c>Relay:Pusher:Apps:{appId}:Webhooks:N</c>.</summary>
public sealed class PusherWebhookOptions
{
    /// <summary>The receiver, an absolute <c>http</c> or <c>https</c> URL.</summary>
    public string? Url { get; set; }

    /// <summary>Which events it gets (<see cref="PusherWebhookEvents.All"/>); none listed: all of them.</summary>
    public List<string> Events { get; } = [];
}

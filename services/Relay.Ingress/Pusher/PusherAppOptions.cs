namespace Relay.Ingress.Pusher;

/// <summary>One app's Pusher settings: <c>Relay:Pusher:Apps:{appId}</c>.</summary>
public sealed class PusherAppOptions
{
    /// <summary>The key (<c>APPID.KEYID</c>) whose name is sent as <c>X-Pusher-Key</c> and whose secret signs the webhooks.</summary>
    public string? WebhookKey { get; set; }

    /// <summary>Where the app's webhooks go.</summary>
    public List<PusherWebhookOptions> Webhooks { get; } = [];
}

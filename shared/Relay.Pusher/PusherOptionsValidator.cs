using Microsoft.Extensions.Options;

namespace Relay.Pusher;

internal sealed class PusherOptionsValidator : IValidateOptions<PusherOptions>
{
    public ValidateOptionsResult Validate(string? name, PusherOptions options)
    {
        var failures = new List<string>();
        if (options.ActivityTimeoutSeconds is < 1 or > 3600)
        {
            failures.Add($"Relay:Pusher:ActivityTimeoutSeconds is {options.ActivityTimeoutSeconds}; set it between 1 and 3600 (Pusher uses 120).");
        }

        if (options.PongTimeoutSeconds is < 1 or > 600)
        {
            failures.Add($"Relay:Pusher:PongTimeoutSeconds is {options.PongTimeoutSeconds}; set it between 1 and 600 (30 is the default).");
        }

        if (options.MaxEventBytes < 1)
        {
            failures.Add($"Relay:Pusher:MaxEventBytes is {options.MaxEventBytes}; set it to 1 or more (Pusher allows 10240; Relay:Ingress:MaxMessageBytes caps it).");
        }

        if (options.MaxChannelsPerEvent is < 1 or > 1000)
        {
            failures.Add($"Relay:Pusher:MaxChannelsPerEvent is {options.MaxChannelsPerEvent}; set it between 1 and 1000 (Pusher allows 100).");
        }

        if (options.MaxBatchEvents is < 1 or > 1000)
        {
            failures.Add($"Relay:Pusher:MaxBatchEvents is {options.MaxBatchEvents}; set it between 1 and 1000 (Pusher allows 10).");
        }

        if (options.TimestampToleranceSeconds is < 1 or > 86400)
        {
            failures.Add($"Relay:Pusher:TimestampToleranceSeconds is {options.TimestampToleranceSeconds}; set it between 1 and 86400 (Pusher uses 600).");
        }

        if (options.ClientEventsPerSecond is < 1 or > 10_000)
        {
            failures.Add($"Relay:Pusher:ClientEventsPerSecond is {options.ClientEventsPerSecond}; set it between 1 and 10000 (Pusher allows 10).");
        }

        if (options.WebhookTimeoutSeconds is < 1 or > 300)
        {
            failures.Add($"Relay:Pusher:WebhookTimeoutSeconds is {options.WebhookTimeoutSeconds}; set it between 1 and 300 (10 is the default).");
        }

        if (options.WebhookMaxAttempts is < 1 or > 20)
        {
            failures.Add($"Relay:Pusher:WebhookMaxAttempts is {options.WebhookMaxAttempts}; set it between 1 and 20 (5 is the default).");
        }

        if (options.WebhookQueueCapacity is < 1 or > 1_000_000)
        {
            failures.Add($"Relay:Pusher:WebhookQueueCapacity is {options.WebhookQueueCapacity}; set it between 1 and 1000000 (10000 is the default).");
        }

        if (options.HttpPollSeconds is < 1 or > 120)
        {
            failures.Add($"Relay:Pusher:HttpPollSeconds is {options.HttpPollSeconds}; set it between 1 and 120 (25 is the default; keep it under the idle timeout of proxies between clients and Relay).");
        }

        if (options.HttpSessionTimeoutSeconds is < 1 or > 3600)
        {
            failures.Add($"Relay:Pusher:HttpSessionTimeoutSeconds is {options.HttpSessionTimeoutSeconds}; set it between 1 and 3600 (5 is the default: a closed pusher-js client's presence member leaves this long after its last stream or poll ended; raise it for clients on very slow links, whose next poll comes later).");
        }

        foreach (var (app, settings) in options.Apps)
        {
            ValidateApp(app, settings, failures);
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private static void ValidateApp(string app, PusherAppOptions settings, List<string> failures)
    {
        var section = $"Relay:Pusher:Apps:{app}";
        if (settings.MaxConnections < 0)
        {
            failures.Add($"{section}:MaxConnections is {settings.MaxConnections}; set it to 0 (no quota) or the most Pusher connections of the app on one node.");
        }

        if (settings.Webhooks.Count == 0)
        {
            return;
        }

        if (string.IsNullOrEmpty(settings.WebhookKey) || !settings.WebhookKey.StartsWith(app + ".", StringComparison.Ordinal) || settings.WebhookKey.Length == app.Length + 1)
        {
            failures.Add($"{section}:WebhookKey is '{settings.WebhookKey}'; webhooks are signed with a key of the app: set it to one of its key names ({app}.KEYID), whose secret the receiver checks X-Pusher-Signature with.");
        }

        for (var i = 0; i < settings.Webhooks.Count; i++)
        {
            var webhook = settings.Webhooks[i];
            if (!Uri.TryCreate(webhook.Url, UriKind.Absolute, out var url) || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps))
            {
                failures.Add($"{section}:Webhooks:{i}:Url is '{webhook.Url}'; set it to an absolute http:// or https:// URL.");
            }

            for (var j = 0; j < webhook.Events.Count; j++)
            {
                if (Array.IndexOf(PusherWebhookEvents.All, webhook.Events[j]) < 0)
                {
                    failures.Add($"{section}:Webhooks:{i}:Events:{j} is '{webhook.Events[j]}'; the events are {string.Join(", ", PusherWebhookEvents.All)} (none listed: all).");
                }
            }
        }
    }
}

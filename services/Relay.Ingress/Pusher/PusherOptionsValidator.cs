using Microsoft.Extensions.Options;

namespace Relay.Ingress.Pusher;

internal sealed class PusherOptionsValidator(IOptions<IngressOptions> ingress) : IValidateOptions<PusherOptions>
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
            failures.Add($"Relay:Pusher:MaxEventBytes is {options.MaxEventBytes}; set it to 1 or more (Pusher allows 10240; Relay:Ingress:MaxMessageBytes, {ingress.Value.MaxMessageBytes} here, caps it).");
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

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

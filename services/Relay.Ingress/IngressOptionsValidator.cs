using Microsoft.Extensions.Options;

namespace Relay.Ingress;

internal sealed class IngressOptionsValidator : IValidateOptions<IngressOptions>
{
    public ValidateOptionsResult Validate(string? name, IngressOptions options)
    {
        var failures = new List<string>();
        if (options.MaxMessageBytes is < 256 or > 16 * 1024 * 1024)
        {
            failures.Add($"Relay:Ingress:MaxMessageBytes is {options.MaxMessageBytes}; set it between 256 and 16777216 bytes.");
        }

        if (options.HeartbeatMs is < 1000 or > 600_000)
        {
            failures.Add($"Relay:Ingress:HeartbeatMs is {options.HeartbeatMs}; set it between 1000 and 600000.");
        }

        if (options.MaxConnections < 0)
        {
            failures.Add($"Relay:Ingress:MaxConnections is {options.MaxConnections}; set it to 0 (derived from the open-file limit) or a positive cap.");
        }

        if (options.SendQueueFrames is < 16 or > 1_000_000)
        {
            failures.Add($"Relay:Ingress:SendQueueFrames is {options.SendQueueFrames}; set it between 16 and 1000000.");
        }

        if (options.MaxHttpBodyBytes < options.MaxMessageBytes)
        {
            failures.Add($"Relay:Ingress:MaxHttpBodyBytes ({options.MaxHttpBodyBytes}) must be at least MaxMessageBytes ({options.MaxMessageBytes}).");
        }

        if (options.CloseTimeout <= TimeSpan.Zero)
        {
            failures.Add("Relay:Ingress:CloseTimeout must be a positive duration such as 00:00:05.");
        }

        if (options.PublishRatePerSecond is < 1 or > 1_000_000)
        {
            failures.Add($"Relay:Ingress:PublishRatePerSecond is {options.PublishRatePerSecond}; set it between 1 and 1000000.");
        }

        if (options.PublishBurst < 0)
        {
            failures.Add($"Relay:Ingress:PublishBurst is {options.PublishBurst}; set 0 (twice the rate) or more.");
        }

        if (options.MaxSubscriptionsPerConnection is < 1 or > 1_000_000)
        {
            failures.Add($"Relay:Ingress:MaxSubscriptionsPerConnection is {options.MaxSubscriptionsPerConnection}; set it between 1 and 1000000.");
        }

        if (options.ReadRatePerSecond is < 1 or > 1_000_000)
        {
            failures.Add($"Relay:Ingress:ReadRatePerSecond is {options.ReadRatePerSecond}; set it between 1 and 1000000.");
        }

        if (options.ReadBurst < 0)
        {
            failures.Add($"Relay:Ingress:ReadBurst is {options.ReadBurst}; set 0 (the larger of twice the rate and MaxSubscriptionsPerConnection) or more.");
        }

        if (options.MaxPresencePerConnection is < 1 or > 1_000_000)
        {
            failures.Add($"Relay:Ingress:MaxPresencePerConnection is {options.MaxPresencePerConnection}; set it between 1 and 1000000.");
        }

        if (options.MaxPresenceDataBytes is < 16 or > 16 * 1024 * 1024)
        {
            failures.Add($"Relay:Ingress:MaxPresenceDataBytes is {options.MaxPresenceDataBytes}; set it between 16 and 16777216 bytes (MaxMessageBytes caps it too).");
        }

        if (options.NodeId.Length > 128)
        {
            failures.Add("Relay:Ingress:NodeId must be at most 128 characters.");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

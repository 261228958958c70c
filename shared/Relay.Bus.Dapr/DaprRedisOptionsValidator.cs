using Microsoft.Extensions.Options;
using Relay.Bus.Redis;

namespace Relay.Bus.Dapr;

/// <summary>Checks <c>Relay:Redis</c> under the Dapr bus, where Redis keeps channel state and routing's shard leases.</summary>
internal sealed class DaprRedisOptionsValidator : IValidateOptions<RedisBusOptions>
{
    public ValidateOptionsResult Validate(string? name, RedisBusOptions options)
    {
        var errors = new List<string>();
        if (string.IsNullOrWhiteSpace(options.Configuration))
        {
            errors.Add("Relay:Redis:Configuration is required with Relay:Bus=dapr: channel state (seq, history, presence) stays in Redis, e.g. Relay__Redis__Configuration=127.0.0.1:6379.");
        }

        if (options.Shards is < 1 or > 4096)
        {
            errors.Add($"Relay:Redis:Shards is {options.Shards}; use 1 to 4096, the same in every process.");
        }

        if (options.LeaseTtl < TimeSpan.FromMilliseconds(300))
        {
            errors.Add($"Relay:Redis:LeaseTtl is {options.LeaseTtl}; use at least 00:00:00.3.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}

using Microsoft.Extensions.Options;

namespace Relay.Routing;

internal sealed class RoutingOptionsValidator : IValidateOptions<RoutingOptions>
{
    public ValidateOptionsResult Validate(string? name, RoutingOptions options)
    {
        var failures = new List<string>();
        if (options.HistorySize is < 0 or > 1_000_000)
        {
            failures.Add($"Relay:Routing:HistorySize is {options.HistorySize}; set it between 0 (history off) and 1000000.");
        }

        if (options.HistoryTtl <= TimeSpan.Zero)
        {
            failures.Add($"Relay:Routing:HistoryTtl is {options.HistoryTtl}; set a positive duration such as 00:05:00.");
        }

        if (options.SweepInterval <= TimeSpan.Zero)
        {
            failures.Add($"Relay:Routing:SweepInterval is {options.SweepInterval}; set a positive duration such as 00:00:30.");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

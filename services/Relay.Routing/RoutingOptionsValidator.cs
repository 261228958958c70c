using Microsoft.Extensions.Options;

namespace Relay.Routing;

internal sealed class RoutingOptionsValidator : IValidateOptions<RoutingOptions>
{
    public ValidateOptionsResult Validate(string? name, RoutingOptions options)
    {
        var failures = new List<string>();
        if (options.SweepInterval <= TimeSpan.Zero)
        {
            failures.Add($"Relay:Routing:SweepInterval is {options.SweepInterval}; set a positive duration such as 00:00:30.");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

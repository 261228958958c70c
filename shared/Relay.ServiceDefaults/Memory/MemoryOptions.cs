using Microsoft.Extensions.Options;

namespace Relay.ServiceDefaults.Memory;

/// <summary>Options of memory housekeeping, bound from <c>Relay:Memory</c>.</summary>
public sealed class MemoryOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "Relay:Memory";

    /// <summary>
    /// When the process goes quiet after a burst (a connection storm, a replay), run one compacting collection so the
    /// garbage the burst left is given back to the system instead of sitting in the heap until the next busy period.
    /// </summary>
    public bool TrimWhenQuiet { get; set; } = true;

    /// <summary>Allocations since the last trim (MiB) that make a trim worth its pause.</summary>
    public int TrimAfterMiB { get; set; } = 32;

    /// <summary>How long the process must have been quiet before a trim.</summary>
    public int QuietSeconds { get; set; } = 5;

    /// <summary>Allocation rate (KiB/s, averaged over <see cref="QuietSeconds"/>) at or under which the process counts as quiet.</summary>
    public int QuietKiBPerSecond { get; set; } = 1024;

    /// <summary>
    /// CPU use (percent of one core, averaged over <see cref="QuietSeconds"/>) at or under which the process counts as
    /// quiet. Relay's delivery path allocates nothing, so a busy fan-out can allocate as little as an idle server: CPU
    /// is what tells them apart. Above 100 means more than one core.
    /// </summary>
    public int QuietCpuPercent { get; set; } = 10;
}

/// <summary>Checks <see cref="MemoryOptions"/> at start-up.</summary>
internal sealed class MemoryOptionsValidator : IValidateOptions<MemoryOptions>
{
    public ValidateOptionsResult Validate(string? name, MemoryOptions options)
    {
        var errors = new List<string>();
        if (options.TrimAfterMiB < 1)
        {
            errors.Add($"Relay:Memory:TrimAfterMiB must be at least 1 (MiB allocated since the last trim); it is {options.TrimAfterMiB}.");
        }

        if (options.QuietSeconds is < 1 or > 600)
        {
            errors.Add($"Relay:Memory:QuietSeconds must be between 1 and 600; it is {options.QuietSeconds}.");
        }

        if (options.QuietCpuPercent < 0)
        {
            errors.Add($"Relay:Memory:QuietCpuPercent must not be negative (percent of one core: 200 means two cores); it is {options.QuietCpuPercent}.");
        }

        if (options.QuietKiBPerSecond < 0)
        {
            errors.Add($"Relay:Memory:QuietKiBPerSecond must not be negative; it is {options.QuietKiBPerSecond}.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}

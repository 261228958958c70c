using Microsoft.Extensions.Options;

namespace Relay.Auth;

/// <summary>Refuses token lifetimes that <c>POST /v1/tokens</c> could not honour, naming the setting and its range.</summary>
internal sealed class RelayTokenIssuingOptionsValidator : IValidateOptions<RelayTokenIssuingOptions>
{
    private const string Section = RelayTokenIssuingOptions.SectionName;

    public ValidateOptionsResult Validate(string? name, RelayTokenIssuingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        if (options.MaxTokenTtlSeconds < 1)
        {
            failures.Add($"{Section}:MaxTokenTtlSeconds is {options.MaxTokenTtlSeconds}; it must be at least 1 (default {RelayTokenIssuingOptions.DefaultMaxTokenTtlSeconds})");
        }

        if (options.DefaultTokenTtlSeconds < 1 || options.DefaultTokenTtlSeconds > options.MaxTokenTtlSeconds)
        {
            failures.Add($"{Section}:DefaultTokenTtlSeconds is {options.DefaultTokenTtlSeconds}; it must be from 1 to MaxTokenTtlSeconds ({options.MaxTokenTtlSeconds})");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}

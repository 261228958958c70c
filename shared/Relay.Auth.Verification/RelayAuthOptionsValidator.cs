using Microsoft.Extensions.Options;
using Relay.Auth.Verification.Keys;
using Relay.Core.Auth;

namespace Relay.Auth.Verification;

/// <summary>Refuses a configuration that would fail later, naming the setting and how to fix it.</summary>
internal sealed class RelayAuthOptionsValidator : IValidateOptions<RelayAuthOptions>
{
    /// <summary>HS256 needs at least 128 bits of key; 16 characters is the least that can carry them.</summary>
    public const int MinSecretLength = 16;

    /// <summary>App and key ids: short enough for logs and URLs.</summary>
    public const int MaxIdLength = 64;

    /// <summary>A glob longer than the longest channel name could never match more than it.</summary>
    public const int MaxGlobLength = 255;

    /// <summary>The longest clock skew accepted: beyond an hour, expiry stops meaning much.</summary>
    public const int MaxClockSkewSeconds = 3_600;

    private const string Section = RelayAuthOptions.SectionName;

    public ValidateOptionsResult Validate(string? name, RelayAuthOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        if (options.ClockSkewSeconds is < 0 or > MaxClockSkewSeconds)
        {
            failures.Add($"{Section}:ClockSkewSeconds is {options.ClockSkewSeconds}; it must be from 0 to {MaxClockSkewSeconds}");
        }

        if (options.KeySource is not ("configuration" or "redis"))
        {
            failures.Add($"{Section}:KeySource is '{options.KeySource}'; use 'configuration' (keys from {Section}:Apps) or 'redis' (keys the auth service published; needs Relay:Redis:Configuration)");
        }

        if (!string.IsNullOrWhiteSpace(options.SigningKeyPath))
        {
            if (VerificationKey.TryLoad(options.SigningKeyPath, out var key, out _, out var error))
            {
                key.Dispose();
            }
            else
            {
                failures.Add(error);
            }
        }

        var appIds = new HashSet<string>(StringComparer.Ordinal);
        for (var a = 0; a < options.Apps.Count; a++)
        {
            var app = options.Apps[a];
            var appPath = $"{Section}:Apps:{a}";
            if (app is null)
            {
                failures.Add($"{appPath} is empty; give it an Id and Keys");
                continue;
            }

            if (!IsValidId(app.Id))
            {
                failures.Add($"{appPath}:Id '{app.Id}' is not a valid app id: use 1-{MaxIdLength} characters of A-Z, a-z, 0-9, '_' and '-'");
            }
            else if (!appIds.Add(app.Id))
            {
                failures.Add($"{appPath}:Id '{app.Id}' is used by another app; app ids must be unique");
            }

            ValidateKeys(app, appPath, failures);
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    /// <summary>Whether <paramref name="id"/> is 1-64 characters of <c>[A-Za-z0-9_-]</c>.</summary>
    public static bool IsValidId(ReadOnlySpan<char> id)
    {
        if (id.Length is 0 or > MaxIdLength)
        {
            return false;
        }

        foreach (var c in id)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not '_' and not '-')
            {
                return false;
            }
        }

        return true;
    }

    private static void ValidateKeys(RelayAppOptions app, string appPath, List<string> failures)
    {
        var keyIds = new HashSet<string>(StringComparer.Ordinal);
        for (var k = 0; k < app.Keys.Count; k++)
        {
            var key = app.Keys[k];
            var keyPath = $"{appPath}:Keys:{k}";
            if (key is null)
            {
                failures.Add($"{keyPath} is empty; give it an Id, a Secret and Capabilities");
                continue;
            }

            if (!IsValidId(key.Id))
            {
                failures.Add($"{keyPath}:Id '{key.Id}' is not a valid key id: use 1-{MaxIdLength} characters of A-Z, a-z, 0-9, '_' and '-'");
            }
            else if (!keyIds.Add(key.Id))
            {
                failures.Add($"{keyPath}:Id '{key.Id}' is used by another key of app '{app.Id}'; key ids must be unique within an app");
            }

            if (string.IsNullOrEmpty(key.Secret))
            {
                failures.Add($"{keyPath}:Secret is empty; set a random secret of at least {MinSecretLength} characters (e.g. openssl rand -base64 24)");
            }
            else if (key.Secret.Length < MinSecretLength)
            {
                failures.Add($"{keyPath}:Secret has {key.Secret.Length} characters; HS256 needs at least 128 bits of key, so use a random secret of at least {MinSecretLength} characters (e.g. openssl rand -base64 24)");
            }

            ValidateCapabilities(key, keyPath, failures);
        }
    }

    private static void ValidateCapabilities(RelayKeyOptions key, string keyPath, List<string> failures)
    {
        if (key.Capabilities.Count == 0)
        {
            failures.Add($"{keyPath}:Capabilities is empty, so the key could do nothing; add at least one {{ \"Channel\": \"*\", \"Operations\": [ \"subscribe\" ] }}");
            return;
        }

        var globs = new HashSet<string>(StringComparer.Ordinal);
        for (var c = 0; c < key.Capabilities.Count; c++)
        {
            var capability = key.Capabilities[c];
            var capabilityPath = $"{keyPath}:Capabilities:{c}";
            if (capability is null)
            {
                failures.Add($"{capabilityPath} is empty; give it a Channel glob and Operations");
                continue;
            }

            if (string.IsNullOrEmpty(capability.Channel) || capability.Channel.Length > MaxGlobLength)
            {
                failures.Add($"{capabilityPath}:Channel must be a channel glob of 1-{MaxGlobLength} characters ('*' matches any run of characters: 'chat:*', '*')");
            }
            else if (capability.Channel.AsSpan().ContainsAnyInRange('\0', '\u001f'))
            {
                failures.Add($"{capabilityPath}:Channel contains a control character");
            }
            else if (!globs.Add(capability.Channel))
            {
                failures.Add($"{capabilityPath}:Channel '{capability.Channel}' is listed twice for this key; merge its operations into one entry");
            }

            if (capability.Operations.Count == 0)
            {
                failures.Add($"{capabilityPath}:Operations is empty; list some of subscribe, publish, presence, history, or * for all");
            }

            for (var o = 0; o < capability.Operations.Count; o++)
            {
                if (Capabilities.ParseOperation(capability.Operations[o] ?? string.Empty) is null)
                {
                    failures.Add($"{capabilityPath}:Operations:{o} '{capability.Operations[o]}' is not an operation; use subscribe, publish, presence, history, or * for all");
                }
            }
        }
    }
}

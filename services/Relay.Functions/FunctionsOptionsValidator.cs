using Microsoft.Extensions.Options;
using Relay.Core.Channels;
using Relay.Functions.Hooks;
using Relay.Functions.Webhooks;

namespace Relay.Functions;

/// <summary>Checks <see cref="FunctionsOptions"/> at start-up.</summary>
internal sealed class FunctionsOptionsValidator : IValidateOptions<FunctionsOptions>
{
    /// <summary>Longest hook timeout: a publish waits that long, and a channel's line behind it.</summary>
    private static readonly TimeSpan MaxHookTimeout = TimeSpan.FromSeconds(30);

    public ValidateOptionsResult Validate(string? name, FunctionsOptions options)
    {
        var errors = new List<string>();
        CheckNamespace("Defaults", options.Defaults, errors);
        foreach (var (ns, hooks) in options.Namespaces)
        {
            if (ns.Length == 0 || ns.Contains(':', StringComparison.Ordinal) || !ChannelName.IsValidName(ns, out _))
            {
                errors.Add($"Relay:Functions:Namespaces:{ns} is not a namespace name: use the text before a channel's first ':' (no ':', '+', '#', '*').");
            }

            CheckNamespace("Namespaces:" + ns, hooks, errors);
        }

        if (options.MaxPendingHooks is < 1 or > 1_000_000)
        {
            errors.Add($"Relay:Functions:MaxPendingHooks must be between 1 and 1000000; it is {options.MaxPendingHooks}.");
        }

        if (options.MaxAnswerBytes is < 1024 or > 16 * 1024 * 1024)
        {
            errors.Add($"Relay:Functions:MaxAnswerBytes must be between 1024 and 16777216; it is {options.MaxAnswerBytes}.");
        }

        if (options.MaxAttempts is < 1 or > 100)
        {
            errors.Add($"Relay:Functions:MaxAttempts must be between 1 and 100; it is {options.MaxAttempts}.");
        }

        if (options.FirstRetryDelay <= TimeSpan.Zero || options.MaxRetryDelay < options.FirstRetryDelay || options.MaxRetryDelay > TimeSpan.FromHours(1))
        {
            errors.Add($"Relay:Functions:FirstRetryDelay must be positive and Relay:Functions:MaxRetryDelay at least as long, at most 01:00:00; they are {options.FirstRetryDelay} and {options.MaxRetryDelay}.");
        }

        if (options.DeliveryTimeout <= TimeSpan.Zero || options.DeliveryTimeout > TimeSpan.FromMinutes(5))
        {
            errors.Add($"Relay:Functions:DeliveryTimeout must be between 00:00:00.001 and 00:05:00; it is {options.DeliveryTimeout}.");
        }

        if (options.QueueCapacity is < 1 or > 10_000_000)
        {
            errors.Add($"Relay:Functions:QueueCapacity must be between 1 and 10000000; it is {options.QueueCapacity}.");
        }

        if (options.QueueBytes < 1024 * 1024)
        {
            errors.Add($"Relay:Functions:QueueBytes must be at least 1048576 (1 MiB); it is {options.QueueBytes}.");
        }

        if (options.Concurrency is < 1 or > 256)
        {
            errors.Add($"Relay:Functions:Concurrency must be between 1 and 256; it is {options.Concurrency}.");
        }

        if (options.DeadLetterCapacity is < 1 or > 1_000_000)
        {
            errors.Add($"Relay:Functions:DeadLetterCapacity must be between 1 and 1000000; it is {options.DeadLetterCapacity}.");
        }

        for (var i = 0; i < options.Webhooks.Count; i++)
        {
            CheckWebhook(i, options.Webhooks[i], errors);
        }

        if (UsesLambda(options))
        {
            var (key, secret) = (options.Lambda.AccessKeyId ?? Environment.GetEnvironmentVariable("AWS_ACCESS_KEY_ID"), options.Lambda.SecretAccessKey ?? Environment.GetEnvironmentVariable("AWS_SECRET_ACCESS_KEY"));
            if (string.IsNullOrEmpty(key) || string.IsNullOrEmpty(secret))
            {
                errors.Add("a lambda: hook target needs credentials: set Relay:Functions:Lambda:AccessKeyId and SecretAccessKey, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones).");
            }
        }

        CheckArchive(options.Archive, errors);

        if (options.Lambda.Endpoint is { Length: > 0 } endpoint && !IsHttpUrl(endpoint))
        {
            errors.Add($"Relay:Functions:Lambda:Endpoint '{endpoint}' is not an http(s) URL.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static void CheckNamespace(string path, FunctionNamespaceOptions hooks, List<string> errors)
    {
        CheckHook($"Relay:Functions:{path}:BeforePublish", hooks.BeforePublish, errors);
        CheckHook($"Relay:Functions:{path}:AfterPublish", hooks.AfterPublish, errors);
    }

    private static void CheckHook(string path, HookOptions? hook, List<string> errors)
    {
        if (hook is null)
        {
            return;
        }

        if (hook.IsOn && !HookTarget.TryParse(hook.Target!, out _, out var error))
        {
            errors.Add($"{path}:Target {error}; or 'none' to turn a default hook off.");
        }

        if (hook.Timeout is { } timeout && (timeout <= TimeSpan.Zero || timeout > MaxHookTimeout))
        {
            errors.Add($"{path}:Timeout must be between 00:00:00.001 and 00:00:30 (a publish waits that long at most); it is {timeout}.");
        }
    }

    private static void CheckWebhook(int index, WebhookOptions webhook, List<string> errors)
    {
        var path = $"Relay:Functions:Webhooks:{index}";
        if (string.IsNullOrEmpty(webhook.Url) || !IsHttpUrl(webhook.Url))
        {
            errors.Add($"{path}:Url must be an http(s) URL; it is '{webhook.Url}'.");
        }

        if (webhook.Secret is not { Length: >= 16 })
        {
            errors.Add($"{path}:Secret must be at least 16 characters: the receiver checks the Relay-Signature header with it.");
        }

        foreach (var type in webhook.Events)
        {
            if (!WebhookEventTypes.IsKnown(type))
            {
                errors.Add($"{path}:Events holds '{type}'; use {WebhookEventTypes.Describe}.");
            }
        }
    }

    private static void CheckArchive(ArchiveOptions archive, List<string> errors)
    {
        if (!archive.Enabled)
        {
            return;
        }

        if (archive.Bucket!.Length is < 3 or > 63)
        {
            errors.Add($"Relay:Functions:Archive:Bucket '{archive.Bucket}' is not an S3 bucket name (3-63 characters).");
        }

        if (archive.ServiceUrl is { Length: > 0 } url && !IsHttpUrl(url))
        {
            errors.Add($"Relay:Functions:Archive:ServiceUrl '{url}' is not an http(s) URL.");
        }

        if (string.IsNullOrEmpty(archive.AccessKeyId ?? Environment.GetEnvironmentVariable("AWS_ACCESS_KEY_ID"))
            || string.IsNullOrEmpty(archive.SecretAccessKey ?? Environment.GetEnvironmentVariable("AWS_SECRET_ACCESS_KEY")))
        {
            errors.Add("Relay:Functions:Archive:Bucket needs credentials: set Relay:Functions:Archive:AccessKeyId and SecretAccessKey, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.");
        }

        if (archive.FlushInterval < TimeSpan.FromMilliseconds(10) || archive.FlushInterval > TimeSpan.FromHours(1))
        {
            errors.Add($"Relay:Functions:Archive:FlushInterval must be between 00:00:00.010 and 01:00:00; it is {archive.FlushInterval}.");
        }

        if (archive.MaxMessagesPerObject is < 1 or > 100_000)
        {
            errors.Add($"Relay:Functions:Archive:MaxMessagesPerObject must be between 1 and 100000; it is {archive.MaxMessagesPerObject}.");
        }

        if (archive.MaxBufferedBytes < 1024 * 1024)
        {
            errors.Add($"Relay:Functions:Archive:MaxBufferedBytes must be at least 1048576 (1 MiB); it is {archive.MaxBufferedBytes}.");
        }
    }

    private static bool UsesLambda(FunctionsOptions options) =>
        options.Namespaces.Values.Append(options.Defaults).Any(static n =>
            n.BeforePublish?.Target?.StartsWith(HookTarget.LambdaPrefix, StringComparison.Ordinal) == true
            || n.AfterPublish?.Target?.StartsWith(HookTarget.LambdaPrefix, StringComparison.Ordinal) == true);

    private static bool IsHttpUrl(string value) =>
        Uri.TryCreate(value, UriKind.Absolute, out var url) && (url.Scheme == Uri.UriSchemeHttp || url.Scheme == Uri.UriSchemeHttps);
}

namespace Relay.Functions;

/// <summary>One hook: where it is and what to do when it does not answer.</summary>
public sealed class HookOptions
{
    /// <summary>Turns a default hook off for one namespace.</summary>
    public const string Off = "none";

    /// <summary>Default time a before-publish hook has to answer: a publish waits that long at most.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(2);

    /// <summary>An <c>http://</c> or <c>https://</c> URL, <c>lambda:&lt;function-arn&gt;</c>, or <c>none</c>.</summary>
    public string? Target { get; set; }

    /// <summary>How long the hook has to answer (default 2 s).</summary>
    public TimeSpan? Timeout { get; set; }

    /// <summary>What a before-publish hook that hangs, fails or answers garbage means: <c>Closed</c> (refuse, default) or <c>Open</c> (publish as sent).</summary>
    public HookFailureMode? OnFailure { get; set; }

    internal bool IsOn => !string.IsNullOrEmpty(Target) && !string.Equals(Target, Off, StringComparison.OrdinalIgnoreCase);
}

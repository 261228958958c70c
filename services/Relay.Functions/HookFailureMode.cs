namespace Relay.Functions;

/// <summary>What a failed before-publish hook call means for the publish.</summary>
public enum HookFailureMode
{
    /// <summary>The publish is refused with 50300: a hook that enforces a rule is never skipped.</summary>
    Closed,

    /// <summary>The publish goes ahead as sent: availability over the hook.</summary>
    Open,
}

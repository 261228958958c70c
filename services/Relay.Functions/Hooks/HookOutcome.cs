namespace Relay.Functions.Hooks;

/// <summary>How a before-publish hook call ended (the <c>outcome</c> tag of <c>relay.functions.hook.calls</c>).</summary>
internal enum HookOutcome
{
    Accept,
    Transform,
    Reject,

    // Failures from here on: the namespace's OnFailure decides.
    Timeout,
    Error,
    Garbage,
    Overload,
}

namespace Relay.Functions.Hooks;

/// <summary>A namespace's hook, resolved against the defaults.</summary>
/// <param name="Namespace">The namespace (empty for the defaults).</param>
/// <param name="Target">Where it is called.</param>
/// <param name="Timeout">How long it has to answer.</param>
/// <param name="FailOpen">For a before-publish hook: whether a failed call lets the publish through.</param>
internal sealed record ResolvedHook(string Namespace, HookTarget Target, TimeSpan Timeout, bool FailOpen);

namespace Relay.Functions.Hooks;

/// <summary>The hooks one namespace has (at least one of them is set).</summary>
internal sealed record NamespaceHooks(ResolvedHook? Before, ResolvedHook? After);

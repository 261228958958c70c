using Relay.Core.Messages;

namespace Relay.Functions.Hooks;

/// <summary>What a before-publish hook decided, or that it failed to.</summary>
/// <param name="Outcome">accept, transform, reject, or a failure (timeout, error, garbage, overload).</param>
/// <param name="Items">For a transform: the messages to publish instead.</param>
/// <param name="Reason">For a reject: the hook's reason; for a failure: what went wrong.</param>
internal readonly record struct HookVerdict(HookOutcome Outcome, IReadOnlyList<PublishItem>? Items, string? Reason)
{
    public bool IsFailure => Outcome >= HookOutcome.Timeout;

    public static HookVerdict Failed(HookOutcome outcome, string reason) => new(outcome, null, reason);
}

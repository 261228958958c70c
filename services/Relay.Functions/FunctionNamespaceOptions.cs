namespace Relay.Functions;

/// <summary>The hooks of one namespace.</summary>
public sealed class FunctionNamespaceOptions
{
    /// <summary>Called before a publish is sequenced: accepts, transforms or rejects it.</summary>
    public HookOptions? BeforePublish { get; set; }

    /// <summary>Called after a publish was acknowledged, off the publish's path, retried.</summary>
    public HookOptions? AfterPublish { get; set; }

    internal bool HasHook => BeforePublish?.IsOn == true || AfterPublish?.IsOn == true;
}

namespace Relay.Functions.Delivery;

/// <summary>One event on its way to a webhook or an after-publish hook: the same id and body on every try.</summary>
internal interface IOutbound
{
    /// <summary>The event's type.</summary>
    string Type { get; }

    /// <summary>The event's id.</summary>
    string Id { get; }

    /// <summary>The JSON body.</summary>
    ReadOnlyMemory<byte> Body { get; }

    /// <summary>What it holds while queued, in bytes (an estimate: its payload and a round overhead).</summary>
    int Size { get; }
}

namespace Relay.Functions.Delivery;

/// <summary>An event given up after its last try.</summary>
/// <param name="Kind"><c>webhook</c> or <c>after_publish</c>.</param>
/// <param name="Destination">The receiver.</param>
/// <param name="Type">The event's type (<c>message</c>, <c>presence</c>, <c>channel.occupied</c>, …, or <c>afterPublish</c>).</param>
/// <param name="Id">The event's id (the <c>Relay-Webhook-Id</c> header).</param>
/// <param name="Attempts">Tries made.</param>
/// <param name="LastError">What the last try got.</param>
/// <param name="At">When it was given up.</param>
/// <param name="Body">The body that was sent.</param>
public sealed record DeadLetter(string Kind, string Destination, string Type, string Id, int Attempts, string LastError, DateTimeOffset At, ReadOnlyMemory<byte> Body);

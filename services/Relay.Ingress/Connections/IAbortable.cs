namespace Relay.Ingress.Connections;

/// <summary>
/// What a failed send ends at once: a connection's transport. An interface the transport implements, not a delegate, so
/// a connection costs no <see cref="Action"/> object (64 B) for it.
/// </summary>
internal interface IAbortable
{
    void Abort();
}

/// <summary>An <see cref="IAbortable"/> over a delegate, for tests and rigs that hold a socket without a transport.</summary>
internal sealed class AbortAction(Action abort) : IAbortable
{
    public void Abort() => abort();
}

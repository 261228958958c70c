using System.IO.Pipelines;
using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;

namespace Relay.Ingress.Connections;

/// <summary>
/// A connection a listener counted in (<see cref="ConnectionGate.TryEnter"/>, or a probe past the cap on one of the
/// refusal slots) and handed to Kestrel: everything is the inner connection's; disposing it (Kestrel does when the
/// connection ends) counts it out, once.
/// </summary>
internal sealed class GatedConnection(ConnectionContext inner, ConnectionGate gate, bool onRefusalSlot) : ConnectionContext
{
    private int _exited;

    public override string ConnectionId { get => inner.ConnectionId; set => inner.ConnectionId = value; }

    public override IFeatureCollection Features => inner.Features;

    public override IDictionary<object, object?> Items { get => inner.Items; set => inner.Items = value; }

    public override IDuplexPipe Transport { get => inner.Transport; set => inner.Transport = value; }

    public override CancellationToken ConnectionClosed { get => inner.ConnectionClosed; set => inner.ConnectionClosed = value; }

    public override EndPoint? LocalEndPoint { get => inner.LocalEndPoint; set => inner.LocalEndPoint = value; }

    public override EndPoint? RemoteEndPoint { get => inner.RemoteEndPoint; set => inner.RemoteEndPoint = value; }

    public override void Abort(ConnectionAbortedException abortReason) => inner.Abort(abortReason);

    public override void Abort() => inner.Abort();

    public override async ValueTask DisposeAsync()
    {
        try
        {
            await inner.DisposeAsync().ConfigureAwait(false);
        }
        finally
        {
            if (Interlocked.Exchange(ref _exited, 1) == 0)
            {
                if (onRefusalSlot)
                {
                    gate.RefusalSlots.Release();
                }
                else
                {
                    gate.Exit();
                }
            }
        }
    }
}

using System.IO.Pipelines;
using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;

namespace Relay.Ingress.Connections;

/// <summary>
/// A connection a listener counted in (<see cref="ConnectionGate.TryEnter"/>, or one on a refusal slot: a probe past the
/// cap, or an MQTT connection its address's limit refuses, which its handler answers in MQTT) and handed on: everything
/// is the inner connection's; disposing it (Kestrel does when the connection ends) counts it out, once.
/// </summary>
internal sealed class GatedConnection(ConnectionContext inner, ConnectionGate gate, IPAddress? address, bool onRefusalSlot) : ConnectionContext
{
    private int _exited;

    /// <summary>Why the gate refused this connection, for a handler that answers the refusal in its own protocol; <see cref="Admission.Admitted"/> otherwise.</summary>
    public Admission Refused { get; init; }

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
                    gate.Exit(address);
                }
            }
        }
    }
}

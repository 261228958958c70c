using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Relay.Ingress.Connections;

/// <summary>
/// Kestrel's own socket transport with the node's connection cap in front, for the endpoints Relay's transport does
/// not take (<see cref="IngressOptions.OwnTransport"/> off, Unix sockets): a connection past the cap never reaches
/// Kestrel; it is answered 503 on a refusal slot, and with every slot busy the next accept waits, so Kestrel's accept
/// loop cannot run the process out of descriptors. A connection its address's limit refuses is answered 429 the same way.
/// With <paramref name="refuseInProtocol"/> (MQTT's listener) a refused connection, past the cap or its address's limit,
/// is instead handed on with <see cref="GatedConnection.Refused"/> set for its handler to answer in its own protocol (a
/// CONNACK), on a refusal slot until it closes: an HTTP answer means nothing to an MQTT client.
/// </summary>
internal sealed class GatedListenerFactory(IOptions<SocketTransportOptions> options, ILoggerFactory loggers, ConnectionGate gate, bool refuseInProtocol = false)
    : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    private readonly SocketTransportFactory _sockets = new(options, loggers);

    public bool CanBind(EndPoint endpoint) => endpoint is IPEndPoint or UnixDomainSocketEndPoint or FileHandleEndPoint;

    public async ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default) =>
        new Listener(await _sockets.BindAsync(endpoint, cancellationToken).ConfigureAwait(false), gate, refuseInProtocol);

    private sealed class Listener(IConnectionListener inner, ConnectionGate gate, bool refuseInProtocol) : IConnectionListener
    {
        public EndPoint EndPoint => inner.EndPoint;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            while (await inner.AcceptAsync(cancellationToken).ConfigureAwait(false) is { } connection)
            {
                var address = gate.Addresses.AddressOf(connection.RemoteEndPoint);
                var admission = gate.TryEnter(address);
                if (admission == Admission.Admitted)
                {
                    return new GatedConnection(connection, gate, address, onRefusalSlot: false);
                }

                await gate.RefusalSlots.WaitAsync(cancellationToken).ConfigureAwait(false);
                if (refuseInProtocol)
                {
                    return new GatedConnection(connection, gate, address: null, onRefusalSlot: true) { Refused = admission };
                }

                _ = RefuseAsync(connection, gate.RefusalFor(admission));
            }

            return null;
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default) => inner.UnbindAsync(cancellationToken);

        public ValueTask DisposeAsync() => inner.DisposeAsync();

        // On a refusal slot already taken: reads the request away and answers 503 or 429 (probes are not served on this path:
        // the connection never reaches Kestrel).
        private async Task RefuseAsync(ConnectionContext connection, byte[] refusal)
        {
            try
            {
                using var wait = new CancellationTokenSource(ConnectionGate.RefusalWait);
                var input = connection.Transport.Input;
                var read = await input.ReadAsync(wait.Token).ConfigureAwait(false);
                input.AdvanceTo(read.Buffer.End);
                await connection.Transport.Output.WriteAsync(refusal, wait.Token).ConfigureAwait(false);
                await connection.Transport.Output.CompleteAsync().ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ConnectionResetException or IOException or ObjectDisposedException)
            {
                // Gone, or too slow to be answered.
            }
            finally
            {
                await connection.DisposeAsync().ConfigureAwait(false);
                gate.RefusalSlots.Release();
            }
        }
    }
}

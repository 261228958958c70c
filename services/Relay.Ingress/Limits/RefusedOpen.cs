using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Relay.Core.Protocol;

namespace Relay.Ingress.Limits;

/// <summary>
/// An app limit's refusal of a connection's first request, found by Relay's realtime listener before it handed the
/// connection to Kestrel, and carried in the connection's items to the endpoint that answers that request
/// (<c>RealtimeEndpoint</c>, <c>PusherWebSocketEndpoint</c>): the endpoint answers with it instead of asking the limit
/// again, so one refused upgrade is one round trip to the bus's counts (a cluster-wide limit) and one
/// <c>relay.ingress.limit_refusals</c>, not two.
/// </summary>
internal sealed class RefusedOpen(string app, RelayError error)
{
    private static readonly object Key = new();

    /// <summary>Carries this refusal on <paramref name="connection"/> to its first request's endpoint.</summary>
    public void CarryOn(ConnectionContext connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        connection.Items[Key] = this;
    }

    /// <summary>
    /// The listener's refusal carried for this request, if any. Taken once, first thing in the endpoint: a later request
    /// on the same connection (HTTP/1.1 keep-alive) asks the limit again.
    /// </summary>
    public static RefusedOpen? Take(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.Features.Get<IConnectionItemsFeature>()?.Items is { } items && items.Remove(Key, out var carried) ? carried as RefusedOpen : null;
    }

    /// <summary>The refusal when it was of <paramref name="forApp"/> (the app this request authenticated as); else null.</summary>
    public RelayError? Of(string forApp) => string.Equals(app, forApp, StringComparison.Ordinal) ? error : null;
}

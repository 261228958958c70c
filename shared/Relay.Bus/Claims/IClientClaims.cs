namespace Relay.Bus.Claims;

/// <summary>
/// Which connection, on which ingress node, holds a client id (MQTT's: a second connection with the id takes over from
/// the first, MQTT 3.1.1 and 5.0 §3.1.4). A node claims the id for each new connection and hears the claims other nodes
/// make, so a connection whose id was claimed later elsewhere is closed wherever it is. Claims are numbered in one
/// increasing order across the deployment: a claim heard late never closes a connection claimed after it.
/// </summary>
public interface IClientClaims
{
    /// <summary>
    /// Claims <paramref name="clientId"/> of <paramref name="app"/> (in <paramref name="scope"/>: <c>mqtt</c>) for a
    /// connection of this process and tells the others; returns the claim's number. <paramref name="endsSession"/>: the
    /// connection ends the session the id had instead of resuming it (MQTT Clean Start 1), so the process that held it
    /// publishes what the session's end publishes (a delayed will) rather than handing it over.
    /// </summary>
    ValueTask<long> ClaimAsync(string scope, string app, string clientId, bool endsSession, CancellationToken cancellationToken);

    /// <summary>Calls <paramref name="claimedElsewhere"/> with each claim another process makes, until disposed.</summary>
    IDisposable Watch(Action<ClientClaim> claimedElsewhere);
}

/// <summary>
/// A client id claimed by a connection somewhere, the claim's number, and whether that connection ends the session the
/// id had (<see cref="IClientClaims.ClaimAsync"/>).
/// </summary>
public sealed record ClientClaim(string Scope, string App, string ClientId, long Number, bool EndsSession = false);

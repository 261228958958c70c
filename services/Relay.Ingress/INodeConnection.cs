using Relay.Core.Protocol;

namespace Relay.Ingress;

/// <summary>A client connection the node tracks: checked once a second for deadlines, aborted when the node stops.</summary>
internal interface INodeConnection
{
    string ConnectionId { get; }

    /// <summary>Token expiry, close deadlines and heartbeats; called once a second by the node's one loop.</summary>
    void CheckDeadlines(DateTimeOffset now);

    /// <summary>
    /// Checks the connection's credentials again unless they were last checked against key set <paramref name="keysVersion"/>:
    /// a removed key disconnects (40102), changed capabilities drop what they no longer allow. Called once a second by the node.
    /// </summary>
    void CheckCredentials(long keysVersion);

    /// <summary>Tells the client to go (a final <c>disconnect</c> with <c>reconnect: true</c>) and closes once it is sent.</summary>
    void Drain(RelayError error);

    void Abort();
}

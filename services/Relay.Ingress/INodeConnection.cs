namespace Relay.Ingress;

/// <summary>A client connection the node tracks: checked once a second for deadlines, aborted when the node stops.</summary>
internal interface INodeConnection
{
    string ConnectionId { get; }

    /// <summary>Token expiry, close deadlines and heartbeats; called once a second by the node's one loop.</summary>
    void CheckDeadlines(DateTimeOffset now);

    void Abort();
}

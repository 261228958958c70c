namespace Relay.Bus.FanOut;

/// <summary>
/// Sees every interest change fan-out applies, after it applied it (the Pusher webhooks' channel occupied/vacated are
/// one): a channel has subscribers somewhere when some node reports them. Called on fan-out's thread; must not block.
/// </summary>
public interface IInterestTap
{
    /// <summary>A node's interest in a channel or pattern changed.</summary>
    void OnInterest(InterestChange change);

    /// <summary>A node stopped: everything it registered is gone.</summary>
    void OnNodeGone(string nodeId);

    /// <summary>Another fan-out process took these channels (app, channel) over: they are its to report now.</summary>
    void OnChannelsLeft(Func<string, string, bool> leaving);
}

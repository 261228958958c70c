namespace Relay.Ingress.Sending;

/// <summary>Something written into but not yet flushed.</summary>
internal interface IFlushTarget
{
    void Flush();
}

namespace Relay.Deploy.Tests;

/// <summary>The one naming rule for images: Relay.FanOut's is relay-fanout.</summary>
internal static class ImageNames
{
    public static string Of(string host) => host.ToLowerInvariant().Replace('.', '-');
}

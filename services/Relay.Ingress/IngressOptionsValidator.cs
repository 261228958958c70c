using Microsoft.Extensions.Options;
using Relay.Auth.Verification;

namespace Relay.Ingress;

internal sealed class IngressOptionsValidator(IOptions<RelayAuthOptions> auth) : IValidateOptions<IngressOptions>
{
    /// <summary>Five minutes: a client waiting longer for a token has long given up.</summary>
    private static readonly TimeSpan MaxAuthTimeout = TimeSpan.FromMinutes(5);

    /// <summary>The JSON around a payload in a frame (as the realtime connection allows for a client frame).</summary>
    private const int MessageFramingBytes = 16 * 1024;

    /// <summary>4 GiB per connection: beyond any reader worth waiting for.</summary>
    private const long MaxSendQueueBytes = 4L * 1024 * 1024 * 1024;

    public ValidateOptionsResult Validate(string? name, IngressOptions options)
    {
        var failures = new List<string>();
        if (options.MaxMessageBytes is < 256 or > 16 * 1024 * 1024)
        {
            failures.Add($"Relay:Ingress:MaxMessageBytes is {options.MaxMessageBytes}; set it between 256 and 16777216 bytes.");
        }

        if (options.HeartbeatMs is < 1000 or > 600_000)
        {
            failures.Add($"Relay:Ingress:HeartbeatMs is {options.HeartbeatMs}; set it between 1000 and 600000.");
        }

        if (options.MaxConnections < 0)
        {
            failures.Add($"Relay:Ingress:MaxConnections is {options.MaxConnections}; set it to 0 (derived from the open-file limit) or a positive cap.");
        }

        if (options.SendQueueFrames is not null)
        {
            failures.Add($"Relay:Ingress:SendQueueFrames ({options.SendQueueFrames}) is no longer read: a connection's outbound queue is budgeted in bytes. Remove it and set Relay:Ingress:SendQueueBytes instead (default {IngressOptions.DefaultSendQueueBytes}, 16 MiB).");
        }

        if (options.LeanWebSockets is not null)
        {
            failures.Add($"Relay:Ingress:LeanWebSockets ({options.LeanWebSockets}) is no longer read: plain-HTTP realtime upgrades are served by Relay's own transport, and every other one by ASP.NET Core's WebSocket. Remove it; to serve every upgrade with ASP.NET Core's WebSocket, set Relay:Ingress:OwnTransport=false.");
        }

        if (options.DirectSocketSends is not null)
        {
            failures.Add($"Relay:Ingress:DirectSocketSends ({options.DirectSocketSends}) is no longer read: Relay's WebSockets always send straight to the socket. Remove it; to serve realtime upgrades with ASP.NET Core's WebSocket instead of Relay's, set Relay:Ingress:OwnTransport=false.");
        }

        if (options.HistoryPageBytes is < 4096 or > 256 * 1024 * 1024)
        {
            failures.Add($"Relay:Ingress:HistoryPageBytes is {options.HistoryPageBytes}; set it between 4096 and 268435456 bytes.");
        }

        // One reply of the largest kind (a history page, which may pass its budget by one message) and one message
        // must fit in an empty budget, or a client doing nothing wrong would be cut.
        var largestReply = (long)options.HistoryPageBytes + options.MaxMessageBytes + MessageFramingBytes;
        if (options.SendQueueBytes < largestReply || options.SendQueueBytes > MaxSendQueueBytes)
        {
            failures.Add($"Relay:Ingress:SendQueueBytes is {options.SendQueueBytes}; set it between {largestReply} (HistoryPageBytes + MaxMessageBytes + {MessageFramingBytes}: one history page and one message must fit) and {MaxSendQueueBytes}.");
        }

        if (options.MaxHttpBodyBytes < options.MaxMessageBytes)
        {
            failures.Add($"Relay:Ingress:MaxHttpBodyBytes ({options.MaxHttpBodyBytes}) must be at least MaxMessageBytes ({options.MaxMessageBytes}).");
        }

        if (options.CloseTimeout <= TimeSpan.Zero)
        {
            failures.Add("Relay:Ingress:CloseTimeout must be a positive duration such as 00:00:05.");
        }

        if (options.DrainTimeout < TimeSpan.Zero || options.DrainTimeout > TimeSpan.FromMinutes(5))
        {
            failures.Add($"Relay:Ingress:DrainTimeout ({options.DrainTimeout}) must be between 00:00:00 (no drain) and 00:05:00; keep it under the host's shutdown timeout (HostOptions.ShutdownTimeout, 30 s by default) and the pod's terminationGracePeriodSeconds.");
        }

        if (options.QuietCheckAfter < TimeSpan.Zero || options.QuietCheckAfter > TimeSpan.FromHours(1))
        {
            failures.Add($"Relay:Ingress:QuietCheckAfter ({options.QuietCheckAfter}) must be between 00:00:00 (no check) and 01:00:00; 00:00:02 repairs a lost last message within about three seconds.");
        }

        foreach (var (setting, value) in new[] { ("MaxConnectionsPerIp", options.MaxConnectionsPerIp), ("ConnectionRatePerIp", options.ConnectionRatePerIp), ("ConnectionBurstPerIp", options.ConnectionBurstPerIp) })
        {
            if (value is < 0 or > 1_000_000)
            {
                failures.Add($"Relay:Ingress:{setting} is {value}; set it between 0 (off) and 1000000.");
            }
        }

        options.AppLimits.Validate(failures);

        if (options.PublishRatePerSecond is < 1 or > 1_000_000)
        {
            failures.Add($"Relay:Ingress:PublishRatePerSecond is {options.PublishRatePerSecond}; set it between 1 and 1000000.");
        }

        if (options.PublishBurst < 0)
        {
            failures.Add($"Relay:Ingress:PublishBurst is {options.PublishBurst}; set 0 (twice the rate) or more.");
        }

        if (options.MaxSubscriptionsPerConnection is < 1 or > 1_000_000)
        {
            failures.Add($"Relay:Ingress:MaxSubscriptionsPerConnection is {options.MaxSubscriptionsPerConnection}; set it between 1 and 1000000.");
        }

        if (options.ReadRatePerSecond is < 1 or > 1_000_000)
        {
            failures.Add($"Relay:Ingress:ReadRatePerSecond is {options.ReadRatePerSecond}; set it between 1 and 1000000.");
        }

        if (options.ReadBurst < 0)
        {
            failures.Add($"Relay:Ingress:ReadBurst is {options.ReadBurst}; set 0 (the larger of twice the rate and MaxSubscriptionsPerConnection) or more.");
        }

        if (options.MaxPresencePerConnection is < 1 or > 1_000_000)
        {
            failures.Add($"Relay:Ingress:MaxPresencePerConnection is {options.MaxPresencePerConnection}; set it between 1 and 1000000.");
        }

        if (options.MaxPresenceDataBytes is < 16 or > 16 * 1024 * 1024)
        {
            failures.Add($"Relay:Ingress:MaxPresenceDataBytes is {options.MaxPresenceDataBytes}; set it between 16 and 16777216 bytes (MaxMessageBytes caps it too).");
        }

        if (options.NodeId.Length > 128)
        {
            failures.Add("Relay:Ingress:NodeId must be at most 128 characters.");
        }

        ValidateAuthUrl(options, auth.Value.KeySource == "redis", failures);
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    // A node that follows the auth service's keys cannot issue tokens (it has no signing key the others trust), so it
    // passes token requests there; one that keeps its own keys issues them itself and would serve the paths twice.
    private static void ValidateAuthUrl(IngressOptions options, bool followsAuthService, List<string> failures)
    {
        if (string.IsNullOrWhiteSpace(options.AuthUrl))
        {
            if (followsAuthService)
            {
                failures.Add("Relay:Ingress:AuthUrl is not set, but this node takes its keys from the auth service (Relay:Auth:KeySource=redis): set it to the auth service's base URL (e.g. http://auth:8081/), where the node passes POST /v1/tokens and GET /.well-known/jwks.json.");
            }
        }
        else if (!Uri.TryCreate(options.AuthUrl, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https") || url.Query.Length > 0 || url.Fragment.Length > 0)
        {
            failures.Add($"Relay:Ingress:AuthUrl is '{options.AuthUrl}'; set it to the auth service's base URL, http:// or https:// with no query (e.g. http://auth:8081/).");
        }
        else if (!followsAuthService)
        {
            failures.Add("Relay:Ingress:AuthUrl is set, but this process keeps its own keys (Relay:Auth:KeySource is not 'redis') and answers POST /v1/tokens itself: remove Relay:Ingress:AuthUrl, or set Relay:Auth:KeySource=redis on ingress nodes that follow the auth service.");
        }

        if (options.AuthTimeout <= TimeSpan.Zero || options.AuthTimeout > MaxAuthTimeout)
        {
            failures.Add($"Relay:Ingress:AuthTimeout is {options.AuthTimeout}; set a duration above zero and at most {MaxAuthTimeout} (e.g. 00:00:05).");
        }
    }
}

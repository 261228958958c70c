using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;

namespace Relay.Bus.Dapr;

/// <summary>Checks <see cref="DaprBusOptions"/> at start-up, with messages that name the setting.</summary>
internal sealed partial class DaprBusOptionsValidator : IValidateOptions<DaprBusOptions>
{
    public ValidateOptionsResult Validate(string? name, DaprBusOptions options)
    {
        var errors = new List<string>();
        if (options.HttpEndpoint is { } http && (!http.IsAbsoluteUri || (http.Scheme != Uri.UriSchemeHttp && http.Scheme != Uri.UriSchemeHttps)))
        {
            errors.Add($"Relay:Dapr:HttpEndpoint '{http}' is not an http(s) URL; use the sidecar's HTTP API, e.g. http://127.0.0.1:3500, or leave it unset to use DAPR_HTTP_PORT.");
        }

        if (string.IsNullOrWhiteSpace(options.PubSub) || !Name().IsMatch(options.PubSub))
        {
            errors.Add($"Relay:Dapr:PubSub '{options.PubSub}' is not a component name; use the metadata.name of the pub/sub component (e.g. 'relay-pubsub').");
        }

        if (string.IsNullOrWhiteSpace(options.RoutingAppId) || !Name().IsMatch(options.RoutingAppId))
        {
            errors.Add($"Relay:Dapr:RoutingAppId '{options.RoutingAppId}' is not a Dapr app id; use the --app-id the routing service's sidecar runs with.");
        }

        if (string.IsNullOrWhiteSpace(options.FanOutAppId) || !Name().IsMatch(options.FanOutAppId))
        {
            errors.Add($"Relay:Dapr:FanOutAppId '{options.FanOutAppId}' is not a Dapr app id; use the --app-id the fan-out service's sidecar runs with.");
        }

        if (string.IsNullOrWhiteSpace(options.TopicPrefix) || !Name().IsMatch(options.TopicPrefix))
        {
            errors.Add($"Relay:Dapr:TopicPrefix '{options.TopicPrefix}' must be 1-100 of [A-Za-z0-9._-] (it starts every topic name).");
        }

        if (options.RequestTimeout < TimeSpan.FromSeconds(1))
        {
            errors.Add($"Relay:Dapr:RequestTimeout is {options.RequestTimeout}; use at least 00:00:01 (two sidecar hops and a Redis script).");
        }

        if (options.ReorderHold < TimeSpan.Zero || options.ReorderHold > TimeSpan.FromSeconds(10))
        {
            errors.Add($"Relay:Dapr:ReorderHold is {options.ReorderHold}; use 00:00:00 (no hold) to 00:00:10: subscribers wait this long for a message that came past a gap.");
        }

        if (options.MaxBatchBytes is < 1024 or > 4 * 1024 * 1024)
        {
            errors.Add($"Relay:Dapr:MaxBatchBytes is {options.MaxBatchBytes}; use 1024 to 4194304 (Dapr's default HTTP body limit is 4 MiB).");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    [GeneratedRegex("^[A-Za-z0-9._-]{1,100}$")]
    private static partial Regex Name();
}

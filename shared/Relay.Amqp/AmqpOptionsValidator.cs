using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;
using Relay.Core.Channels;

namespace Relay.Amqp;

/// <summary>Checks <see cref="AmqpOptions"/> at start-up.</summary>
internal sealed partial class AmqpOptionsValidator : IValidateOptions<AmqpOptions>
{
    private static readonly string[] ExchangeTypes = ["topic", "direct", "fanout", "headers"];

    public ValidateOptionsResult Validate(string? name, AmqpOptions options)
    {
        var errors = new List<string>();
        var enabled = options.OutboundEnabled || options.InboundEnabled;
        if (enabled)
        {
            if (string.IsNullOrWhiteSpace(options.Uri)
                || !System.Uri.TryCreate(options.Uri, UriKind.Absolute, out var uri)
                || uri.Scheme is not ("amqp" or "amqps"))
            {
                errors.Add($"Relay:Amqp:Uri is required when Relay:Amqp:Exchange or Relay:Amqp:Queue is set and must be an amqp:// or amqps:// URI, e.g. 'amqp://relay:secret@rabbit:5672/%2f'; it is '{Redact(options.Uri)}'.");
            }

            if (string.IsNullOrEmpty(options.App) || !AppId().IsMatch(options.App))
            {
                errors.Add($"Relay:Amqp:App is required when Relay:Amqp:Exchange or Relay:Amqp:Queue is set and must be an app id ([A-Za-z0-9_-]{{1,64}}): the app whose channels are bridged; it is '{options.App}'.");
            }
        }

        CheckName(errors, "Exchange", options.Exchange);
        CheckName(errors, "Queue", options.Queue);
        CheckName(errors, "InboundExchange", options.InboundExchange);
        CheckName(errors, "DeadLetterExchange", options.DeadLetterExchange);
        if (Array.IndexOf(ExchangeTypes, options.ExchangeType) < 0)
        {
            errors.Add($"Relay:Amqp:ExchangeType must be one of topic, direct, fanout, headers; it is '{options.ExchangeType}'.");
        }

        foreach (var pattern in options.OutboundChannels)
        {
            if (!ChannelName.IsValidPattern(pattern, out var error))
            {
                errors.Add($"Relay:Amqp:OutboundChannels holds '{pattern}': {error}");
            }
        }

        var key = options.RoutingKey.Replace("{channel}", string.Empty, StringComparison.Ordinal).Replace("{app}", string.Empty, StringComparison.Ordinal);
        if (key.Contains('{', StringComparison.Ordinal) || key.Contains('}', StringComparison.Ordinal) || System.Text.Encoding.UTF8.GetByteCount(options.RoutingKey) > 255)
        {
            errors.Add($"Relay:Amqp:RoutingKey '{options.RoutingKey}' may hold only text and the placeholders {{channel}} and {{app}}, within 255 bytes.");
        }

        if (options.OutboundEnabled && options.InboundEnabled && options.InboundExchange == options.Exchange)
        {
            errors.Add($"Relay:Amqp:InboundExchange is the outbound exchange '{options.Exchange}': every message published outbound would come back into its channel. Bind the queue to another exchange.");
        }

        if (options.OutboundQueueBytes < 1024 * 1024)
        {
            errors.Add($"Relay:Amqp:OutboundQueueBytes must be at least 1048576 (1 MiB); it is {options.OutboundQueueBytes}.");
        }

        if (options.OutboundMaxInFlight is < 1 or > 65_535)
        {
            errors.Add($"Relay:Amqp:OutboundMaxInFlight must be between 1 and 65535; it is {options.OutboundMaxInFlight}.");
        }

        if (options.Prefetch is < 1 or > 65_535)
        {
            errors.Add($"Relay:Amqp:Prefetch must be between 1 and 65535 (an AMQP prefetch count); it is {options.Prefetch}.");
        }

        if (options.InboundMaxMessageBytes is < 1 or > 16 * 1024 * 1024)
        {
            errors.Add($"Relay:Amqp:InboundMaxMessageBytes must be between 1 and 16777216; it is {options.InboundMaxMessageBytes}.");
        }

        if (string.IsNullOrWhiteSpace(options.ChannelHeader))
        {
            errors.Add("Relay:Amqp:ChannelHeader must not be empty: the message header that names the channel (default 'relay-channel').");
        }

        if (!options.InboundEnabled && (options.InboundExchange is not null || options.InboundBindingKeys.Count > 0 || options.DeadLetterExchange is not null))
        {
            errors.Add("Relay:Amqp:InboundExchange, InboundBindingKeys and DeadLetterExchange configure the inbound queue: set Relay:Amqp:Queue too, or remove them.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static void CheckName(List<string> errors, string setting, string? value)
    {
        if (value is not null && !ResourceName().IsMatch(value))
        {
            errors.Add($"Relay:Amqp:{setting} '{value}' is not an AMQP name Relay accepts (1-255 of [A-Za-z0-9._:-]).");
        }
    }

    /// <summary>The URI without its password, for the message.</summary>
    private static string? Redact(string? value) =>
        value is not null && System.Uri.TryCreate(value, UriKind.Absolute, out var uri) && uri.UserInfo.Contains(':', StringComparison.Ordinal)
            ? value.Replace(uri.UserInfo, uri.UserInfo[..uri.UserInfo.IndexOf(':', StringComparison.Ordinal)] + ":***", StringComparison.Ordinal)
            : value;

    [GeneratedRegex("^[A-Za-z0-9._:-]{1,255}$")]
    private static partial Regex ResourceName();

    [GeneratedRegex("^[A-Za-z0-9_-]{1,64}$")]
    private static partial Regex AppId();
}

using Microsoft.Extensions.Options;

namespace Relay.Ingress.Mqtt;

internal sealed class MqttOptionsValidator(IOptions<IngressOptions> ingress) : IValidateOptions<MqttOptions>
{
    /// <summary>The fixed header, a topic of the longest channel name and room for MQTT 5 properties around a payload.</summary>
    private const int PacketOverheadBytes = 1024;

    public ValidateOptionsResult Validate(string? name, MqttOptions options)
    {
        var failures = new List<string>();
        if (options.Port is < 0 or > 65535)
        {
            failures.Add($"Relay:Mqtt:Port is {options.Port}; set a TCP port between 1 and 65535 (1883 is MQTT's), 0 for any free port, or Relay:Mqtt:Enabled=false to serve no MQTT.");
        }

        if (options.TlsPort is < -1 or > 65535 || (options.TlsPort > 0 && options.TlsPort == options.Port))
        {
            failures.Add($"Relay:Mqtt:TlsPort is {options.TlsPort}; set a TCP port between 1 and 65535 other than Relay:Mqtt:Port (8883 is MQTT over TLS's), 0 for any free port, or -1 to serve no MQTT over TLS (it is served only when Relay:Tls names a certificate).");
        }

        var certificates = options.ClientCertificates;
        if (certificates.Enabled)
        {
            try
            {
                foreach (var authority in MqttClientCertificates.LoadAuthorities(certificates.CaPath!))
                {
                    authority.Dispose();
                }
            }
            catch (InvalidOperationException ex)
            {
                failures.Add(ex.Message);
            }
        }

        if (certificates.Required && !certificates.Enabled)
        {
            failures.Add("Relay:Mqtt:ClientCertificates:Required is true without Relay:Mqtt:ClientCertificates:CaPath; name the authorities whose certificates are accepted, or set Required to false.");
        }

        foreach (var (commonName, key) in certificates.Keys)
        {
            if (!IsKeyName(key))
            {
                failures.Add($"Relay:Mqtt:ClientCertificates:Keys:{commonName} is '{key}'; set the key name APPID.KEYID (no secret) that a certificate with CN={commonName} connects as.");
            }
        }

        if (options.Anonymous.Key is { } anonymous && !IsKeyName(anonymous))
        {
            failures.Add($"Relay:Mqtt:Anonymous:Key is '{anonymous}'; set the key name APPID.KEYID (no secret) that connections without credentials connect as, or leave it unset to refuse them.");
        }

        var smallest = ingress.Value.MaxMessageBytes + PacketOverheadBytes;
        if (options.MaxPacketBytes < smallest || options.MaxPacketBytes > Codec.MqttDecoder.MaxRemainingLength)
        {
            failures.Add($"Relay:Mqtt:MaxPacketBytes is {options.MaxPacketBytes}; set it between {smallest} (Relay:Ingress:MaxMessageBytes plus {PacketOverheadBytes} for the topic and properties: a message Relay accepts must fit) and {Codec.MqttDecoder.MaxRemainingLength} (MQTT's largest).");
        }

        if (options.ConnectTimeout <= TimeSpan.Zero || options.ConnectTimeout > TimeSpan.FromMinutes(5))
        {
            failures.Add($"Relay:Mqtt:ConnectTimeout is {options.ConnectTimeout}; set it above 0 and at most 00:05:00.");
        }

        if (options.MaxKeepAliveSeconds is < 1 or > 65535)
        {
            failures.Add($"Relay:Mqtt:MaxKeepAliveSeconds is {options.MaxKeepAliveSeconds}; set it between 1 and 65535 (MQTT's keep-alive is two bytes of seconds).");
        }

        if (options.MaxInflight is < 1 or > 65535)
        {
            failures.Add($"Relay:Mqtt:MaxInflight is {options.MaxInflight}; set it between 1 and 65535 (one packet id each).");
        }

        if (options.PositionWriteSeconds is < 0 or > 3600)
        {
            failures.Add($"Relay:Mqtt:PositionWriteSeconds is {options.PositionWriteSeconds}; set it between 1 and 3600 seconds (how much a session resumed after its node died gets again), or 0 to write positions only on subscribe, unsubscribe and the session's refresh.");
        }

        if (options.ReceiveMaximum is < 1 or > 65535)
        {
            failures.Add($"Relay:Mqtt:ReceiveMaximum is {options.ReceiveMaximum}; set it between 1 and 65535.");
        }

        if (options.MaxServerTopicAliases is < 0 or > 65535)
        {
            failures.Add($"Relay:Mqtt:MaxServerTopicAliases is {options.MaxServerTopicAliases}; set it between 0 (Relay sends no topic aliases) and 65535 (MQTT's largest alias).");
        }

        if (options.MaxRetainedPerApp is < 0 or > 10_000_000)
        {
            failures.Add($"Relay:Mqtt:MaxRetainedPerApp is {options.MaxRetainedPerApp}; set it between 0 (no retained messages) and 10000000.");
        }

        if (options.MaxQueuedMessages < 1)
        {
            failures.Add($"Relay:Mqtt:MaxQueuedMessages is {options.MaxQueuedMessages}; set it to 1 or more (QoS 1/2 messages a persistent session keeps for an absent client).");
        }

        if (options.MaxQueuedBytes < 1024)
        {
            failures.Add($"Relay:Mqtt:MaxQueuedBytes is {options.MaxQueuedBytes}; set it to 1024 or more (bytes a persistent session keeps for an absent client).");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private static bool IsKeyName(string key) =>
        key.IndexOf('.', StringComparison.Ordinal) > 0 && !key.EndsWith('.') && !key.Contains(':', StringComparison.Ordinal);
}

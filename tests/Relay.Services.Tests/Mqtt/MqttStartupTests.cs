using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Options;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>Start-up: a taken port and invalid settings fail with messages naming the setting to change; MQTT can be turned off.</summary>
public sealed class MqttStartupTests
{
    [Fact]
    public async Task Start_PortInUse_FailsNamingTheSetting()
    {
        using var holder = new TcpListener(IPAddress.IPv6Any, 0);
        holder.Server.DualMode = true;
        holder.Start();
        var port = ((IPEndPoint)holder.LocalEndpoint).Port;

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Mqtt:Port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture) }));

        Assert.Contains($"TCP port {port}", error.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Mqtt:Port", error.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Mqtt:Enabled=false", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_PacketLimitBelowMessageLimit_FailsNamingBoth()
    {
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Ingress:MaxMessageBytes"] = "65536",
            ["Relay:Mqtt:MaxPacketBytes"] = "4096",
            ["Relay:Mqtt:MaxInflight"] = "0",
            ["Relay:Mqtt:MaxRetainedPerApp"] = "-1",
            ["Relay:Mqtt:MaxQueuedMessages"] = "0",
            ["Relay:Mqtt:PositionWriteSeconds"] = "-1",
            ["Relay:Mqtt:MaxServerTopicAliases"] = "70000",
            ["Relay:Mqtt:TlsPort"] = "-2",
            ["Relay:Mqtt:ClientCertificates:CaPath"] = "missing-device-ca.pem",
            ["Relay:Mqtt:ClientCertificates:Keys:sensor-1"] = "no-key-name",
            ["Relay:Mqtt:Anonymous:Key"] = "test.root:with-a-secret",
        }));

        Assert.Contains("Relay:Mqtt:MaxPacketBytes is 4096", error.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Ingress:MaxMessageBytes", error.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Mqtt:MaxInflight is 0", error.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Mqtt:MaxRetainedPerApp is -1", error.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Mqtt:MaxQueuedMessages is 0", error.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Mqtt:PositionWriteSeconds is -1", error.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Mqtt:MaxServerTopicAliases is 70000", error.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Mqtt:TlsPort is -2", error.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Mqtt:ClientCertificates:CaPath 'missing-device-ca.pem' does not exist", error.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Mqtt:ClientCertificates:Keys:sensor-1 is 'no-key-name'", error.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Mqtt:Anonymous:Key is 'test.root:with-a-secret'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Stop_WithOpenMqttConnections_EndsPromptly()
    {
        var server = await RelayServer.StartAsync();
        var clients = new List<MqttClients.Connected>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                clients.Add(await MqttClients.ConnectAsync(server, i % 2 == 0 ? MQTTnet.Formatter.MqttProtocolVersion.V500 : MQTTnet.Formatter.MqttProtocolVersion.V311));
            }

            var watch = System.Diagnostics.Stopwatch.StartNew();
            await server.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(20));

            // The node aborts them as it stops; the host's 30 s shutdown timeout is never what ends it.
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"stopping took {watch.Elapsed}");
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Client.Dispose();
            }
        }
    }

    [Fact]
    public async Task Start_Disabled_ServesNoMqtt()
    {
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Mqtt:Enabled"] = "false" });

        Assert.Null(server.MqttPort);
        using var http = new HttpClient { BaseAddress = server.BaseAddress };
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync(new Uri("mqtt", UriKind.Relative)).WaitAsync(TimeSpan.FromSeconds(10))).StatusCode);
    }
}

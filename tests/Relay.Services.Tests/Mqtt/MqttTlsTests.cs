using System.Buffers;
using System.Globalization;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// MQTT over TLS on <c>Relay:Mqtt:TlsPort</c> with the host's certificate (<c>Relay:Tls</c>, made in the test):
/// mosquitto_pub/mosquitto_sub checking it against the certificate as their CA file, MQTTnet over TLS, the plain port
/// still plain, and a renewed certificate served to the next handshake.
/// </summary>
public sealed class MqttTlsTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly string _folder = Directory.CreateTempSubdirectory("relay-mqtt-tls-").FullName;
    private readonly TestCertificate _certificate = TestCertificate.Create("relay-mqtt");

    private string CertificatePath => Path.Combine(_folder, "tls.crt");

    private string KeyPath => Path.Combine(_folder, "tls.key");

    public void Dispose()
    {
        _certificate.Dispose();
        Directory.Delete(_folder, recursive: true);
    }

    private Task<RelayServer> StartAsync(string reloadInterval = "00:00:10", Dictionary<string, string?>? extra = null)
    {
        _certificate.WriteTo(CertificatePath, KeyPath);
        var settings = ServerFixture.Settings();
        foreach (var (key, value) in extra ?? [])
        {
            settings[key] = value;
        }

        settings["Relay:Tls:CertificatePath"] = CertificatePath;
        settings["Relay:Tls:KeyPath"] = KeyPath;
        settings["Relay:Tls:ReloadInterval"] = reloadInterval;
        return RelayServer.StartAsync(settings);
    }

    [Fact]
    public async Task Mosquitto_WithTheCertificateAsCaFile_PublishesAndSubscribesOverTls()
    {
        await using var server = await StartAsync();
        var port = server.MqttTlsPort!.Value.ToString(CultureInfo.InvariantCulture);
        var topic = $"mqtt-tls/{Guid.NewGuid():N}";
        var (user, password) = MqttClients.Credentials(RelayServer.Key);
        using var sub = ClientProcess.Mosquitto("mosquitto_sub", "-h", "127.0.0.1", "-p", port, "--cafile", CertificatePath, "-u", user, "-P", password,
            "-V", "mqttv5", "-t", topic, "-q", "1", "-C", "1", "-W", "20", "-d", "-F", "got:%p");
        await sub.WaitForAsync("SUBACK", Timeout);

        using (var pub = ClientProcess.Mosquitto("mosquitto_pub", "-h", "127.0.0.1", "-p", port, "--cafile", CertificatePath, "-u", user, "-P", password,
            "-V", "mqttv311", "-t", topic, "-q", "1", "-m", "over tls"))
        {
            Assert.True(await pub.ExitAsync(Timeout) == 0, pub.Output);
        }

        Assert.Equal("got:over tls", await sub.WaitForAsync("got:", Timeout));

        // A CA file that is not the server's: mosquitto refuses the handshake.
        using var other = TestCertificate.Create("someone-else");
        var otherPath = Path.Combine(_folder, "other.crt");
        await File.WriteAllTextAsync(otherPath, other.CertificatePem);
        using var refused = ClientProcess.Mosquitto("mosquitto_pub", "-h", "127.0.0.1", "-p", port, "--cafile", otherPath, "-u", user, "-P", password,
            "-t", topic, "-m", "never");
        Assert.NotEqual(0, await refused.ExitAsync(Timeout));
    }

    [Fact]
    public async Task OverTls_PastMaxConnectionsPerIp_ConnAckQuotaExceeded_AnotherAddressConnects()
    {
        await using var server = await StartAsync(extra: new() { ["Relay:Ingress:MaxConnectionsPerIp"] = "1" });
        async Task<(TcpClient Tcp, SslStream Tls, byte Code)> ConnectAsync(string source, string clientId)
        {
            var tcp = new TcpClient(new System.Net.IPEndPoint(System.Net.IPAddress.Parse(source), 0));
            await tcp.ConnectAsync("127.0.0.1", server.MqttTlsPort!.Value).WaitAsync(Timeout);
            var tls = new SslStream(tcp.GetStream(), leaveInnerStreamOpen: false, (_, _, _, _) => true);
            await tls.AuthenticateAsClientAsync("relay-mqtt").WaitAsync(Timeout);
            await tls.WriteAsync(RawMqttClient.Connect(5, clientId)).AsTask().WaitAsync(Timeout);
            var connAck = new byte[4];
            await tls.ReadExactlyAsync(connAck).AsTask().WaitAsync(Timeout);
            Assert.Equal(0x20, connAck[0]);
            return (tcp, tls, connAck[3]);
        }

        var first = await ConnectAsync("127.0.0.28", "tls-first");
        var refused = await ConnectAsync("127.0.0.28", "tls-refused");
        var other = await ConnectAsync("127.0.0.29", "tls-other");
        try
        {
            Assert.Equal(0, first.Code);
            Assert.Equal(0x97, refused.Code);
            Assert.Equal(0, other.Code);
        }
        finally
        {
            foreach (var (tcp, tls, _) in new[] { first, refused, other })
            {
                await tls.DisposeAsync();
                tcp.Dispose();
            }
        }
    }

    [Fact]
    public async Task MqttNet_OverTls_ReachesAPlainPortSubscriber()
    {
        await using var server = await StartAsync();
        var topic = $"mqtt-tls/{Guid.NewGuid():N}";
        await using var plain = await MqttClients.ConnectAsync(server, MqttProtocolVersion.V311);
        await plain.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);

        var seen = new List<string>();
        var client = new MqttClientFactory().CreateMqttClient();
        try
        {
            var (user, password) = MqttClients.Credentials(RelayServer.Key);
            var options = new MqttClientOptionsBuilder().WithProtocolVersion(MqttProtocolVersion.V500).WithClientId("tls-" + Guid.NewGuid().ToString("N")[..8])
                .WithTcpServer("127.0.0.1", server.MqttTlsPort!.Value).WithCredentials(user, password).WithTimeout(Timeout)
                .WithTlsOptions(o => o.UseTls().WithCertificateValidationHandler(e =>
                {
                    seen.Add(e.Certificate.GetCertHashString());
                    return e.Certificate.GetCertHashString() == _certificate.Thumbprint;
                }))
                .Build();
            await client.ConnectAsync(options).WaitAsync(Timeout);
            var ack = await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload("secret").WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);
            Assert.True(ack.IsSuccess, $"PUBACK {ack.ReasonCode}");
        }
        finally
        {
            client.Dispose();
        }

        Assert.Equal("secret", Encoding.UTF8.GetString((await plain.NextAsync()).Payload.ToArray()));
        Assert.Equal([_certificate.Thumbprint], seen);

        // Plain MQTT to the TLS port: no CONNACK, the connection is closed (a failed handshake), and the port serves on.
        await using var wrongSide = await RawMqttClient.OpenAsync(server, server.MqttTlsPort!.Value);
        await wrongSide.SendAsync(RawMqttClient.Connect(4, "plain-to-tls"));
        Assert.Empty(await wrongSide.ReadUntilClosedAsync());
        Assert.Equal(_certificate.Thumbprint, await HandshakeThumbprintAsync(server));
    }

    [Fact]
    public async Task Certificate_FilesReplaced_NextMqttTlsHandshakeGetsTheNewOne()
    {
        await using var server = await StartAsync(reloadInterval: "00:00:01");
        Assert.Equal(_certificate.Thumbprint, await HandshakeThumbprintAsync(server));
        using var second = TestCertificate.Create("relay-mqtt-renewed");
        second.WriteTo(CertificatePath, KeyPath);

        var thumbprint = _certificate.Thumbprint;
        for (var i = 0; i < 50 && thumbprint != second.Thumbprint; i++)
        {
            await Task.Delay(200);
            thumbprint = await HandshakeThumbprintAsync(server);
        }

        Assert.Equal(second.Thumbprint, thumbprint);
    }

    private static async Task<string> HandshakeThumbprintAsync(RelayServer server)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync("127.0.0.1", server.MqttTlsPort!.Value).WaitAsync(Timeout);
        string? thumbprint = null;
        await using var ssl = new SslStream(tcp.GetStream(), leaveInnerStreamOpen: false, (_, certificate, _, _) =>
        {
            thumbprint = certificate?.GetCertHashString();
            return true;
        });
        await ssl.AuthenticateAsClientAsync("127.0.0.1").WaitAsync(Timeout);
        return thumbprint!;
    }
}

using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// Client certificates on MQTT over TLS (<c>Relay:Mqtt:ClientCertificates</c>), with mosquitto_pub presenting them: a
/// device certificate of the configured authority connects as the key its common name maps to, without a password;
/// no certificate, one of another authority, or one mapped to no key is refused.
/// </summary>
public sealed class MqttClientCertificateTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private readonly string _folder = Directory.CreateTempSubdirectory("relay-mqtt-mtls-").FullName;
    private readonly TestCertificate _server = TestCertificate.Create("relay-mqtt");

    public void Dispose()
    {
        _server.Dispose();
        Directory.Delete(_folder, recursive: true);
    }

    private string PathOf(string name) => Path.Combine(_folder, name);

    [Fact]
    public async Task ClientCertificate_OfTheAuthorityMappedToAKey_ConnectsWithoutPassword_OthersRefused()
    {
        using var authority = Authority("relay-test-devices");
        using var stranger = Authority("someone-elses-devices");
        WriteDevice(authority, "sensor-1", "device");
        WriteDevice(authority, "sensor-unmapped", "unmapped");
        WriteDevice(stranger, "sensor-1", "stranger");
        await File.WriteAllTextAsync(PathOf("ca.crt"), authority.Certificate.ExportCertificatePem());
        await using var server = await StartAsync(required: true);
        var port = server.MqttTlsPort!.Value.ToString(CultureInfo.InvariantCulture);
        var topic = $"mqtt-mtls/{Guid.NewGuid():N}";
        await using var subscriber = await MqttClients.ConnectAsync(server, MqttProtocolVersion.V500);
        await subscriber.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.AtLeastOnce).Build()).WaitAsync(Timeout);

        string[] Publish(string? device, string message) =>
        [
            "-h", "127.0.0.1", "-p", port, "--cafile", PathOf("server.crt"), "-V", "mqttv5", "-i", "pub-" + message, "-t", topic, "-q", "1", "-m", message,
            .. device is null ? Array.Empty<string>() : ["--cert", PathOf(device + ".crt"), "--key", PathOf(device + ".key")],
        ];

        using (var pub = ClientProcess.Mosquitto("mosquitto_pub", Publish("device", "from-sensor")))
        {
            Assert.True(await pub.ExitAsync(Timeout) == 0, pub.Output);
        }

        var received = await subscriber.NextAsync();
        Assert.Equal("from-sensor", Encoding.UTF8.GetString(received.Payload.ToArray()));

        foreach (var (device, why) in new[] { ((string?)null, "no certificate"), ("stranger", "another authority's"), ("unmapped", "mapped to no key") })
        {
            using var refused = ClientProcess.Mosquitto("mosquitto_pub", Publish(device, "never"));
            Assert.True(await refused.ExitAsync(Timeout) != 0, $"{why}: {refused.Output}");
        }

        await Task.Delay(300);
        Assert.False(subscriber.TryNext(out _), "a refused client published");
    }

    [Fact]
    public async Task ClientCertificate_NotRequired_WithoutOneUserNameAndPasswordStillWork()
    {
        using var authority = Authority("relay-test-devices");
        await File.WriteAllTextAsync(PathOf("ca.crt"), authority.Certificate.ExportCertificatePem());
        await using var server = await StartAsync(required: false);
        var (user, password) = MqttClients.Credentials(RelayServer.Key);
        using var pub = ClientProcess.Mosquitto("mosquitto_pub", "-h", "127.0.0.1", "-p", server.MqttTlsPort!.Value.ToString(CultureInfo.InvariantCulture),
            "--cafile", PathOf("server.crt"), "-u", user, "-P", password, "-t", $"mqtt-mtls/{Guid.NewGuid():N}", "-q", "1", "-m", "with a password");
        Assert.True(await pub.ExitAsync(Timeout) == 0, pub.Output);
    }

    private Task<RelayServer> StartAsync(bool required)
    {
        _server.WriteTo(PathOf("server.crt"), PathOf("server.key"));
        var settings = ServerFixture.Settings();
        settings["Relay:Tls:CertificatePath"] = PathOf("server.crt");
        settings["Relay:Tls:KeyPath"] = PathOf("server.key");
        settings["Relay:Mqtt:ClientCertificates:CaPath"] = PathOf("ca.crt");
        settings["Relay:Mqtt:ClientCertificates:Required"] = required ? "true" : "false";
        settings["Relay:Mqtt:ClientCertificates:Keys:sensor-1"] = MqttClients.Credentials(RelayServer.Key).User;
        return RelayServer.StartAsync(settings);
    }

    private static TestAuthority Authority(string name)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        return new TestAuthority(request.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(30)), key);
    }

    // A device certificate for client authentication, issued by the authority, written as <file>.crt and <file>.key.
    private void WriteDevice(TestAuthority authority, string commonName, string file)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={commonName}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, false));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.2")], false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(authority.Certificate, true, false));
        var now = DateTimeOffset.UtcNow;
        using var device = request.Create(authority.Certificate, now.AddMinutes(-4), now.AddDays(29), RandomNumberGenerator.GetBytes(8));
        File.WriteAllText(PathOf(file + ".crt"), device.ExportCertificatePem());
        File.WriteAllText(PathOf(file + ".key"), key.ExportPkcs8PrivateKeyPem());
    }

    private sealed record TestAuthority(X509Certificate2 Certificate, ECDsa Key) : IDisposable
    {
        public void Dispose()
        {
            Certificate.Dispose();
            Key.Dispose();
        }
    }
}

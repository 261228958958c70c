using System.Globalization;
using Microsoft.Extensions.Options;
using Relay.Testing;

namespace Relay.Services.Tests.Distributed;

/// <summary>
/// Redis with client certificates (<c>Relay:Redis:ClientCertificatePath</c>, <c>TrustedCaPath</c>): against a
/// redis-server that requires a certificate from the internal CA, a service with one carries publishes and deliveries
/// between nodes; one without it, with one from another CA, or with an expired one is refused, and start-up stops with a
/// message naming the setting instead of hanging.
/// </summary>
public sealed class RedisMutualTlsTests(MutualTlsRedisFixture tls) : IClassFixture<MutualTlsRedisFixture>
{
    private static readonly TimeSpan StartLimit = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task ClientCertificateFromTheCa_CarriesPublishesBetweenNodes()
    {
        await using var publisherNode = await RelayServer.StartAsync(tls.Service("routing", redisOnly: true));
        await using var subscriberNode = await RelayServer.StartAsync(tls.Service("ingress", redisOnly: true));
        await using var subscriber = await TestSocket.ConnectAsync(subscriberNode.RealtimeUriWithKey(RelayServer.Key));
        Assert.Equal("ok", (await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "mtls" })).GetProperty("type").GetString());
        await using var publisher = await TestSocket.ConnectAsync(publisherNode.RealtimeUriWithKey(RelayServer.Key));

        // The subscription reaches the publisher's side through Redis a moment after it is acknowledged: publish until one arrives.
        for (var attempt = 0; ; attempt++)
        {
            var ack = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "mtls", ["data"] = attempt });
            Assert.Equal("ok", ack.GetProperty("type").GetString());
            try
            {
                var message = await subscriber.ReceiveMessageAsync(TimeSpan.FromSeconds(1));
                Assert.Equal("mtls", message.GetProperty("channel").GetString());
                break;
            }
            catch (TimeoutException) when (attempt < 30)
            {
            }
        }

        // The channel's log is in this Redis (read with the fixture's own certificate).
        await using var direct = await tls.Redis.ConnectAsync();
        Assert.True(await direct.GetDatabase().PingAsync() >= TimeSpan.Zero);
        Assert.NotEmpty(direct.GetServers()[0].Keys(pattern: "*mtls*").Take(1));
    }

    [Fact]
    public async Task NoClientCertificate_RedisRefusesIt_StartUpStopsSayingWhy()
    {
        var settings = ServerFixture.Settings();
        tls.AddTo(settings);
        var failure = await Assert.ThrowsAnyAsync<Exception>(() => RelayServer.StartAsync(settings).WaitAsync(StartLimit));
        Assert.True(failure.Message.Contains("cannot reach Redis", StringComparison.Ordinal), failure.ToString());
        Assert.Contains("Relay:Redis:ClientCertificatePath", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ClientCertificateFromAnotherCa_RedisRefusesIt_StartUpStopsSayingWhy()
    {
        using var otherCa = TestCertificate.CreateAuthority("another-ca");
        var failure = await Assert.ThrowsAnyAsync<Exception>(() => RelayServer.StartAsync(tls.Service("stranger", otherCa, redisOnly: true)).WaitAsync(StartLimit));
        Assert.True(failure.Message.Contains("cannot reach Redis", StringComparison.Ordinal), failure.ToString());
        Assert.Contains("the server may not trust the client certificate (Relay:Redis:ClientCertificatePath", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ServerCertificateNotFromTheTrustedCa_TheServiceRefusesRedis()
    {
        using var otherCa = TestCertificate.CreateAuthority("another-ca");
        var otherCaPath = Path.Combine(tls.Directory, "other-ca.pem");
        await File.WriteAllTextAsync(otherCaPath, otherCa.CertificatePem);
        var settings = tls.Service("suspicious", redisOnly: true);
        settings["Relay:Redis:TrustedCaPath"] = otherCaPath;
        var failure = await Assert.ThrowsAnyAsync<Exception>(() => RelayServer.StartAsync(settings).WaitAsync(StartLimit));
        Assert.True(failure.Message.Contains("cannot reach Redis", StringComparison.Ordinal), failure.ToString());
    }

    [Fact]
    public async Task ExpiredClientCertificate_StopsTheHostAtStart_NamingTheSetting()
    {
        var now = DateTimeOffset.UtcNow;
        var settings = tls.Service("expired", notBefore: now.AddHours(-12), notAfter: now.AddHours(-1), redisOnly: true);
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(settings).WaitAsync(StartLimit));
        Assert.Contains("Relay:Redis:ClientCertificatePath", failure.Message, StringComparison.Ordinal);
        Assert.Contains("expired at", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task KeyOfAnotherCertificate_StopsTheHostAtStart_NamingTheSetting()
    {
        var settings = tls.Service("mismatched");
        var other = tls.Service("other");
        settings["Relay:Redis:ClientKeyPath"] = other["Relay:Redis:ClientKeyPath"];
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(settings).WaitAsync(StartLimit));
        Assert.Contains("Relay:Redis:ClientCertificatePath", failure.Message, StringComparison.Ordinal);
        Assert.Contains("the key must be the certificate's own", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CaFileWithoutACertificate_StopsTheHostAtStart_NamingTheSetting()
    {
        var settings = tls.Service("no-ca");
        var notCa = Path.Combine(tls.Directory, "not-a-ca.pem");
        await File.WriteAllTextAsync(notCa, "not a certificate\n");
        settings["Relay:Redis:TrustedCaPath"] = notCa;
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(settings).WaitAsync(StartLimit));
        Assert.Contains($"Relay:Redis:TrustedCaPath '{notCa}' holds no PEM certificate", failure.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Relay:Redis:ClientCertificatePath")]
    [InlineData("Relay:Redis:ClientKeyPath")]
    [InlineData("Relay:Redis:TrustedCaPath")]
    public async Task MissingFile_StopsTheHostAtStart_NamingTheSetting(string setting)
    {
        var settings = tls.Service("missing-" + setting.Length.ToString(CultureInfo.InvariantCulture));
        settings[setting] = Path.Combine(tls.Directory, "nowhere.pem");
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(settings).WaitAsync(StartLimit));
        Assert.Contains($"{setting} '{settings[setting]}' does not exist", failure.Message, StringComparison.Ordinal);
    }
}

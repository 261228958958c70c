using System.Security.Authentication;

namespace Relay.Redis.Tests;

public sealed class TlsServerFixture : IAsyncLifetime
{
    public RedisServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await RedisServer.StartAsync(tls: true);

    public async Task DisposeAsync() => await Server.DisposeAsync();
}

/// <summary>TLS against redis-server's own TLS port (Debian's build links OpenSSL), with a self-signed certificate.</summary>
public class TlsTests(TlsServerFixture fixture) : IClassFixture<TlsServerFixture>
{
    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task PinnedCertificate_CommandsAndPubSubWork(bool resp3)
    {
        await using var redis = await RedisConnection.ConnectAsync(fixture.Server.Options(resp3));
        await using var subscriber = await RedisSubscriber.ConnectAsync(fixture.Server.Options(resp3));

        await redis.SetAsync("tls", "secret");
        Assert.Equal("secret", (await redis.GetAsync("tls")).AsString());
        var replies = await Task.WhenAll(Enumerable.Range(0, 200).Select(i => redis.ExecuteAsync("ECHO", i)));
        Assert.Equal(Enumerable.Range(0, 200).Select(i => (long)i), replies.Select(r => r.AsInt64()));

        await subscriber.SubscribeAsync("tls-channel");
        Assert.Equal(1, await redis.PublishAsync("tls-channel", "over tls"));
        Assert.Equal("over tls", CommandTests.Text((await Wait.ReadAsync(subscriber)).Payload));
    }

    [Fact(Timeout = 20_000)]
    public async Task UntrustedCertificate_FailsTheConnect()
    {
        var error = await Assert.ThrowsAsync<RedisConnectionException>(() =>
            RedisConnection.ConnectAsync(fixture.Server.Options(configure: o => o.TlsCertificateValidation = null)));
        Assert.Contains("(TLS)", error.Message, StringComparison.Ordinal);
        Assert.IsType<AuthenticationException>(error.InnerException);
    }

    [Fact(Timeout = 20_000)]
    public async Task WrongTargetHost_FailsTheConnect()
    {
        // The pinning callback still sees the name mismatch in its policy errors; the system check refuses it.
        var error = await Assert.ThrowsAsync<RedisConnectionException>(() =>
            RedisConnection.ConnectAsync(fixture.Server.Options(configure: o =>
            {
                o.TlsTargetHost = "not-the-name";
                o.TlsCertificateValidation = (_, _, _, errors) => errors == System.Net.Security.SslPolicyErrors.None;
            })));
        Assert.IsType<AuthenticationException>(error.InnerException);
    }
}

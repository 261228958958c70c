namespace Relay.Redis.Tests;

public sealed class PasswordServerFixture : IAsyncLifetime
{
    public const string Password = "s3cret-for-tests";

    public RedisServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await RedisServer.StartAsync(Password);

    public async Task DisposeAsync() => await Server.DisposeAsync();
}

/// <summary>AUTH (RESP2) and HELLO AUTH (RESP3) against a server with requirepass, and SELECT.</summary>
public class AuthAndSelectTests(PasswordServerFixture fixture) : IClassFixture<PasswordServerFixture>
{
    [Theory(Timeout = 20_000)]
    [InlineData(false, null)]
    [InlineData(true, null)]
    [InlineData(false, "default")]
    [InlineData(true, "default")]
    public async Task RightPassword_Connects(bool resp3, string? username)
    {
        await using var redis = await RedisConnection.ConnectAsync(fixture.Server.Options(resp3, o => o.Username = username));
        await redis.PingAsync();
        var whoami = await redis.ExecuteAsync("ACL", "WHOAMI");
        Assert.Equal("default", whoami.AsString());
    }

    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task WrongPassword_FailsWithTheServersReason(bool resp3)
    {
        var error = await Assert.ThrowsAsync<RedisConnectionException>(() =>
            RedisConnection.ConnectAsync(fixture.Server.Options(resp3, o => o.Password = "wrong")));
        Assert.Contains("refused the connection handshake", error.Message, StringComparison.Ordinal);
        Assert.Contains("WRONGPASS", error.Message, StringComparison.Ordinal);
        Assert.Contains(resp3 ? "(HELLO)" : "(AUTH)", error.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = 20_000)]
    public async Task NoPassword_FailsWithNoAuth()
    {
        var error = await Assert.ThrowsAsync<RedisConnectionException>(() =>
            RedisConnection.ConnectAsync(fixture.Server.Options(configure: o => o.Password = null)));
        Assert.Contains("NOAUTH", error.Message, StringComparison.Ordinal);
    }

    [Theory(Timeout = 20_000)]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Select_IsolatesDatabases(bool resp3)
    {
        await using var db0 = await RedisConnection.ConnectAsync(fixture.Server.Options(resp3));
        await using var db5 = await RedisConnection.ConnectAsync(fixture.Server.Options(resp3, o => o.Database = 5));
        var key = $"select:{resp3}:{Guid.NewGuid():N}";

        await db0.SetAsync(key, "zero");
        Assert.True((await db5.GetAsync(key)).IsNull);
        await db5.SetAsync(key, "five");

        Assert.Equal("zero", (await db0.GetAsync(key)).AsString());
        Assert.Equal("five", (await db5.GetAsync(key)).AsString());
        var clientInfo = (await db5.ExecuteAsync("CLIENT", "INFO")).AsString()!;
        Assert.Contains(" db=5 ", clientInfo, StringComparison.Ordinal);
    }

    [Fact(Timeout = 20_000)]
    public async Task Select_OutOfRange_FailsTheConnect()
    {
        var error = await Assert.ThrowsAsync<RedisConnectionException>(() =>
            RedisConnection.ConnectAsync(fixture.Server.Options(configure: o => o.Database = 99)));
        Assert.Contains("(SELECT)", error.Message, StringComparison.Ordinal);
    }
}

using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Options;
using Relay.Testing;

namespace Relay.Services.Tests.Distributed;

/// <summary>
/// <c>Relay:Redis:Configuration</c> takes a StackExchange.Redis configuration string; the older <c>Relay:Redis:Endpoint</c>
/// keeps working; settings that cannot work stop the host at start-up, saying what to write instead.
/// </summary>
public sealed class RedisOptionsTests(RedisBusFixture redis) : IClassFixture<RedisBusFixture>
{
    [Fact]
    public async Task Configuration_AStackExchangeRedisString_CarriesTheBus()
    {
        var settings = Settings();
        settings["Relay:Redis:Configuration"] = redis.Redis.Configuration + ",connectTimeout=3000,name=relay-options-test";
        await using var server = await RelayServer.StartAsync(settings);
        await AssertPublishSubscribeWorksAsync(server);
    }

    [Fact]
    public async Task Endpoint_TheOlderSetting_StillCarriesTheBus()
    {
        var settings = Settings();
        settings["Relay:Redis:Endpoint"] = $"127.0.0.1:{redis.Redis.Port}";
        await using var server = await RelayServer.StartAsync(settings);
        await AssertPublishSubscribeWorksAsync(server);
    }

    [Fact]
    public async Task ConfigurationAndEndpoint_BothSet_StopTheHost_SayingToKeepConfiguration()
    {
        var settings = Settings();
        settings["Relay:Redis:Configuration"] = redis.Redis.Configuration;
        settings["Relay:Redis:Endpoint"] = $"127.0.0.1:{redis.Redis.Port}";
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(settings));
        Assert.Contains("keep only Configuration", failure.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("127.0.0.1:6379,nosuchoption=1", "is not a StackExchange.Redis configuration string")]
    [InlineData("password=only", "names no server")]
    public async Task Configuration_ThatCannotWork_StopsTheHost_NamingTheSetting(string configuration, string expected)
    {
        var settings = Settings();
        settings["Relay:Redis:Configuration"] = configuration;
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(settings));
        Assert.Contains("Relay:Redis:Configuration", failure.Message, StringComparison.Ordinal);
        Assert.Contains(expected, failure.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("password=only", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NoRedisSetting_WithTheRedisBus_StopsTheHost_SayingWhatToWrite()
    {
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(Settings()));
        Assert.Contains("Relay:Redis:Configuration is required", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Configuration_NamingNoLiveServer_StopsTheHost_WithTheServerInTheMessage()
    {
        var settings = Settings();
        var port = FreePort();
        settings["Relay:Redis:Configuration"] = $"127.0.0.1:{port},connectTimeout=500";
        var failure = await Assert.ThrowsAnyAsync<Exception>(() => RelayServer.StartAsync(settings).WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.True(failure.Message.Contains("cannot reach Redis", StringComparison.Ordinal), failure.ToString());
        Assert.Contains(port.ToString(System.Globalization.CultureInfo.InvariantCulture), failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task FanOutLeaseTtl_TooShortToRenew_StopsTheHost_NamingTheSetting()
    {
        var settings = Settings();
        settings["Relay:Redis:Configuration"] = redis.Redis.Configuration;
        settings["Relay:Redis:FanOutLeaseTtl"] = "00:00:00.1";
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(settings));
        Assert.Contains("Relay:Redis:FanOutLeaseTtl is 00:00:00.1000000; use at least 00:00:00.3", failure.Message, StringComparison.Ordinal);
    }

    private static Dictionary<string, string?> Settings()
    {
        var settings = ServerFixture.Settings();
        settings["Relay:Bus"] = "redis";
        settings["Relay:Redis:LeaseTtl"] = "00:00:02";
        return settings;
    }

    private static async Task AssertPublishSubscribeWorksAsync(RelayServer server)
    {
        await using var client = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        Assert.Equal("ok", (await client.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "options" })).GetProperty("type").GetString());
        var channel = "options";
        var ack = await client.RequestAsync(new() { ["type"] = "publish", ["channel"] = channel, ["data"] = 7 });
        Assert.Equal("ok", ack.GetProperty("type").GetString());
        Assert.Equal(7, (await client.ReceiveMessageAsync()).GetProperty("data").GetInt32());
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

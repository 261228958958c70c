using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Relay.Bus;
using Relay.Bus.Connections;
using Relay.Bus.InMemory;
using Relay.Bus.Keys;
using Relay.Bus.Redis;
using Relay.Bus.Routing;
using Relay.FanOut;
using Relay.Routing;
using Relay.Routing.Channels;
using Relay.Testing;
using StackExchange.Redis;

namespace Relay.Services.Tests.Distributed;

/// <summary>
/// The bus is chosen once, by the host (<c>AddRelayBus().AddRedisWhenConfigured(configuration)</c>): with
/// <c>Relay:Bus=redis</c> the Redis bus and its roles (routing's channel authority, the auth key directory) serve, without it
/// the in-memory bus and the services' own; the services themselves never ask which bus they run on.
/// </summary>
public sealed class BusRegistrationTests(RedisBusFixture redis) : IClassFixture<RedisBusFixture>
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task Host_WithRelayBusRedis_ServesTheRedisRolesAndPublishesItsKeysToRedis()
    {
        var settings = ServerFixture.Settings();
        redis.AddTo(settings);
        await using var server = await RelayServer.StartAsync(settings);

        Assert.IsType<RedisBus>(server.Services.GetRequiredService<IRelayBus>());
        var authority = server.Services.GetRequiredService<IChannelAuthority>();
        Assert.Equal("RedisChannelAuthority", authority.GetType().Name);
        Assert.Equal(typeof(RedisBus).Assembly, authority.GetType().Assembly);
        var directory = Assert.Single(server.Services.GetServices<IKeyDirectory>());
        Assert.Equal(typeof(RedisBus).Assembly, directory.GetType().Assembly);
        Assert.Equal("RedisConnectionCounts", server.Services.GetRequiredService<IConnectionCounts>().GetType().Name);

        // The auth service's keys reach Redis through the directory, where following nodes read them.
        var database = (await server.Services.GetRequiredService<RedisConnector>().ConnectAsync().WaitAsync(Patience)).GetDatabase();
        using var deadline = new CancellationTokenSource(Patience);
        while (!(await database.StringGetAsync(RedisKeys.AuthVersion).WaitAsync(Patience)).HasValue)
        {
            await Task.Delay(100, deadline.Token);
        }

        var published = await database.HashGetAllAsync(RedisKeys.AuthKeys).WaitAsync(Patience);
        Assert.Contains(published, entry => entry.Name == RelayServer.Key[..RelayServer.Key.IndexOf(':', StringComparison.Ordinal)]);
    }

    [Fact]
    public async Task Host_WithoutRelayBus_ServesTheInMemoryRolesAndNoRedis()
    {
        await using var server = await RelayServer.StartAsync(ServerFixture.Settings());

        Assert.IsType<InMemoryBus>(server.Services.GetRequiredService<IRelayBus>());
        Assert.Same(server.Services.GetRequiredService<ChannelAuthority>(), server.Services.GetRequiredService<IChannelAuthority>());
        Assert.Empty(server.Services.GetServices<IKeyDirectory>());
        Assert.IsType<InMemoryConnectionCounts>(server.Services.GetRequiredService<IConnectionCounts>());
        Assert.Null(server.Services.GetService<RedisBus>());
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AddRedis_BeforeOrAfterTheRoutingService_ReplacesTheInMemoryRoles(bool redisFirst)
    {
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder().Build());
        services.AddLogging();
        if (redisFirst)
        {
            services.AddRelayBus().AddRedis(options => options.Configuration = "127.0.0.1:1");
            services.AddRelayRouting();
        }
        else
        {
            services.AddRelayRouting();
            services.AddRelayBus().AddRedis(options => options.Configuration = "127.0.0.1:1");
        }

        // Resolving connects nothing: the bus connects on first use.
        await using var provider = services.BuildServiceProvider();
        Assert.IsType<RedisBus>(provider.GetRequiredService<IRelayBus>());
        Assert.Equal("RedisChannelAuthority", provider.GetRequiredService<IChannelAuthority>().GetType().Name);
        Assert.Single(provider.GetServices<IKeyDirectory>());
    }

    [Fact]
    public async Task Host_WithRelayBusRedis_ThatLeftOutTheRedisBus_StopsAtStartSayingWhatToCall()
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["Relay:Bus"] = "redis" });
        builder.Services.AddMetrics();
        builder.Services.AddRelayFanOut();
        using var host = builder.Build();

        var failure = await Assert.ThrowsAsync<InvalidOperationException>(() => host.StartAsync().WaitAsync(Patience));
        Assert.Contains("AddRelayBus().AddRedisWhenConfigured(configuration)", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Host_WithAnUnknownRelayBus_StopsAtStartNamingTheChoices()
    {
        var settings = ServerFixture.Settings();
        settings["Relay:Bus"] = "kafka";
        var failure = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(settings));
        Assert.Contains("Relay:Bus is 'kafka'; use 'memory' (one process) or 'redis'", failure.Message, StringComparison.Ordinal);
    }
}

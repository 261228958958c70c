using Microsoft.Extensions.DependencyInjection;
using Relay.Bus.Routing;
using Relay.Core.Messages;
using Relay.Routing.Channels;
using Relay.Testing;

namespace Relay.Functions.Tests;

/// <summary>
/// With a hook configured for one namespace, the publishes of every other namespace and every request that is not a
/// publish cost what they cost unwrapped: the decorator adds no allocation (and no await: it returns the authority's
/// own ValueTask).
/// </summary>
public sealed class UnhookedPathTests
{
    private const int Rounds = 20_000;

    [Fact]
    public async Task HookedAuthority_PublishInANamespaceWithoutHooks_AllocatesNoMoreThanTheAuthorityAlone()
    {
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Functions:Namespaces:chat:BeforePublish:Target"] = "http://127.0.0.1:9/",
            ["Relay:Functions:Namespaces:audit:AfterPublish:Target"] = "http://127.0.0.1:9/",
        });
        var decorated = server.Services.GetRequiredService<IChannelAuthority>();
        var inner = server.Services.GetRequiredService<ChannelAuthority>();
        Assert.NotSame(inner, decorated);

        PublishItem[] items = [new PublishItem(null, "1"u8.ToArray(), true, null)];
        var publish = new PublishRequest(RelayServer.AppId, "free:alloc", items, null, null);
        var position = new PositionRequest(RelayServer.AppId, "chat:alloc");

        // Warm both paths up, then measure each the same way on this thread (both complete synchronously in memory).
        var viaInner = Measure(inner, publish, position);
        var viaDecorator = Measure(decorated, publish, position);
        viaInner = Measure(inner, publish, position);
        viaDecorator = Measure(decorated, publish, position);
        Assert.True(viaDecorator <= viaInner + 1.0, $"decorated {viaDecorator:0.0} B per request pair, authority alone {viaInner:0.0} B");
    }

    private static double Measure(IChannelAuthority authority, PublishRequest publish, PositionRequest position)
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < Rounds; i++)
        {
            var published = authority.HandleAsync(publish, CancellationToken.None);
            Assert.True(published.IsCompletedSuccessfully);
            _ = published.Result;
            var read = authority.HandleAsync(position, CancellationToken.None);
            Assert.True(read.IsCompletedSuccessfully);
            _ = read.Result;
        }

        return (GC.GetAllocatedBytesForCurrentThread() - before) / (double)Rounds;
    }
}

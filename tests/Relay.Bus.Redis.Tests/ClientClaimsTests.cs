using System.Threading.Channels;
using Relay.Bus.Claims;

namespace Relay.Bus.Redis.Tests;

/// <summary>
/// Client-id claims over a real redis-server (<see cref="RedisClientClaims"/>), two buses standing for two processes:
/// each claim is numbered in one order and heard by the other process with whether it ends the session (an MQTT clean
/// start), and a frame of an older version, which has no such mark, still reads.
/// </summary>
public sealed class ClientClaimsTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    [Fact(Timeout = 60_000)]
    public async Task Claim_HeardElsewhere_WithWhetherItEndsTheSession()
    {
        await using var buses = new TestBuses(redis.Server, Timeout);
        var x = buses.Make();
        var y = buses.Make();
        await Task.WhenAll(x.ReadyAsync(), y.ReadyAsync()).WaitAsync(Timeout);
        var heard = Channel.CreateUnbounded<ClientClaim>();
        using var watch = new RedisClientClaims(x).Watch(claim => heard.Writer.TryWrite(claim));
        var claims = new RedisClientClaims(y);
        var clientId = "c-" + Guid.NewGuid().ToString("N")[..8];

        // The watch subscribes in the background: claims of a warm-up id until one is heard.
        var warmUp = clientId + "-warm";
        while (true)
        {
            await claims.ClaimAsync("mqtt", "app", warmUp, endsSession: false, CancellationToken.None).AsTask().WaitAsync(Timeout);
            using var wait = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
            try
            {
                if ((await heard.Reader.ReadAsync(wait.Token)).ClientId == warmUp)
                {
                    break;
                }
            }
            catch (OperationCanceledException)
            {
                // Not subscribed yet.
            }
        }

        while (heard.Reader.TryRead(out _))
        {
        }

        var resumes = await claims.ClaimAsync("mqtt", "app", clientId, endsSession: false, CancellationToken.None).AsTask().WaitAsync(Timeout);
        var ends = await claims.ClaimAsync("mqtt", "app", clientId, endsSession: true, CancellationToken.None).AsTask().WaitAsync(Timeout);
        Assert.True(ends > resumes);
        Assert.Equal(new ClientClaim("mqtt", "app", clientId, resumes, EndsSession: false), await heard.Reader.ReadAsync().AsTask().WaitAsync(Timeout));
        Assert.Equal(new ClientClaim("mqtt", "app", clientId, ends, EndsSession: true), await heard.Reader.ReadAsync().AsTask().WaitAsync(Timeout));
    }

    [Fact]
    public void ParseClaim_FramesWithAndWithoutTheMark()
    {
        // An older version's frame (no mark) reads as a claim that resumes; the mark is not part of the claimer's id.
        Assert.Equal(("node-1", new ClientClaim("mqtt", "app", "dev", 42)), RedisBus.ParseClaim("6:node-14:mqtt3:app3:dev\n42"));
        Assert.Equal(("node-1", new ClientClaim("mqtt", "app", "dev", 43, EndsSession: true)), RedisBus.ParseClaim("10:node-1|end4:mqtt3:app3:dev\n43"));
        Assert.Null(RedisBus.ParseClaim("6:node-14:mqtt3:app3:dev\n"));
    }
}

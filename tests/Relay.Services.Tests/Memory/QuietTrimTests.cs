using System.Globalization;
using System.Net;
using Relay.ServiceDefaults.Memory;
using Relay.Testing;

namespace Relay.Services.Tests.Memory;

/// <summary>The quiet-time heap trim: when it decides to run, and that a real server runs it and counts it.</summary>
public sealed class QuietTrimTests
{
    private const long MiB = 1024 * 1024;

    private static readonly MemoryOptions Options = new() { TrimAfterMiB = 32, QuietSeconds = 3, QuietKiBPerSecond = 1024 };

    [Fact]
    public void BurstThenQuiet_TrimsOnce_AfterTheQuietPeriod()
    {
        var policy = new QuietTrimPolicy(Options, 0);
        var allocated = 0L;

        // A burst: 40 MiB a second for five seconds, never quiet.
        for (var second = 0; second < 5; second++)
        {
            allocated += 40 * MiB;
            Assert.False(policy.Sample(allocated), $"trimmed under load at second {second}");
        }

        // Quiet: 100 KiB a second. Due once three quiet seconds are behind it, not before.
        Assert.False(policy.Sample(allocated += 100 * 1024));
        Assert.False(policy.Sample(allocated += 100 * 1024));
        Assert.True(policy.Sample(allocated += 100 * 1024));
        policy.Trimmed(allocated);

        // Still quiet, but nothing new to give back: never again until another burst.
        for (var second = 0; second < 30; second++)
        {
            Assert.False(policy.Sample(allocated += 100 * 1024), $"trimmed again at quiet second {second}");
        }
    }

    [Fact]
    public void SmallBurst_IsNotWorthAPause()
    {
        var policy = new QuietTrimPolicy(Options, 1000 * MiB);
        var allocated = 1000 * MiB + (20 * MiB);
        for (var second = 0; second < 10; second++)
        {
            Assert.False(policy.Sample(allocated));
        }
    }

    [Fact]
    public void SteadyLoad_NeverTrims()
    {
        var policy = new QuietTrimPolicy(Options, 0);
        var allocated = 0L;
        for (var second = 0; second < 60; second++)
        {
            // 2 MiB a second: above the quiet rate, and 120 MiB in all.
            Assert.False(policy.Sample(allocated += 2 * MiB), $"trimmed under steady load at second {second}");
        }
    }

    [Fact]
    public void QuietAtTheRateLimit_CountsAsQuiet_AndJustAboveDoesNot()
    {
        var atLimit = new QuietTrimPolicy(Options, 0);
        var above = new QuietTrimPolicy(Options, 0);
        Assert.False(atLimit.Sample(64 * MiB));
        Assert.False(above.Sample(64 * MiB));
        for (var second = 1; second <= 3; second++)
        {
            var quiet = atLimit.Sample((64 * MiB) + (second * 1024 * 1024));
            var busy = above.Sample((64 * MiB) + (second * (1024 * 1024 + 1)));
            Assert.Equal(second == 3, quiet);
            Assert.False(busy);
        }
    }

    [Fact]
    public async Task Server_TrimsAfterABurst_AndCountsIt()
    {
        // Every rate counts as quiet here: tests beside this one allocate in the same process.
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Memory:TrimAfterMiB"] = "1",
            ["Relay:Memory:QuietSeconds"] = "1",
            ["Relay:Memory:QuietKiBPerSecond"] = "100000000",
        });
        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TestSocket.DefaultTimeout };
        var garbage = 0L;
        for (var i = 0; i < 64; i++)
        {
            garbage += new byte[64 * 1024].Length;
        }

        Assert.True(garbage >= 4 * MiB);
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (Trims(await http.GetStringAsync("metrics")) < 1)
        {
            Assert.True(DateTime.UtcNow < deadline, "no trim was counted within 20 s of a 4 MiB burst");
            await Task.Delay(200);
        }
    }

    [Fact]
    public async Task Server_WithBadMemoryOptions_RefusesToStart_SayingWhich()
    {
        var error = await Assert.ThrowsAnyAsync<Exception>(() => RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Memory:QuietSeconds"] = "0" }));
        Assert.Contains("Relay:Memory:QuietSeconds must be between 1 and 600", error.ToString(), StringComparison.Ordinal);
    }

    private static double Trims(string metrics)
    {
        foreach (var line in metrics.Split('\n'))
        {
            if (line.StartsWith("relay_memory_trims", StringComparison.Ordinal))
            {
                return double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }
}

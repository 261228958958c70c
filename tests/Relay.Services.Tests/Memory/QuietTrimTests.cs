using System.Globalization;
using System.Net;
using Relay.ServiceDefaults.Memory;
using Relay.Testing;

namespace Relay.Services.Tests.Memory;

/// <summary>The quiet-time heap trim: when it decides to run, and that a real server runs it and counts it.</summary>
public sealed class QuietTrimTests
{
    private const long MiB = 1024 * 1024;

    private static readonly MemoryOptions Options = new() { TrimAfterMiB = 32, QuietSeconds = 3, QuietKiBPerSecond = 1024, QuietCpuPercent = 10 };

    /// <summary>CPU time after <paramref name="seconds"/> seconds at <paramref name="percent"/> of one core.</summary>
    private static TimeSpan Cpu(int seconds, double percent) => TimeSpan.FromSeconds(seconds * percent / 100);

    [Fact]
    public void BurstThenQuiet_TrimsOnce_AfterTheQuietPeriod()
    {
        var policy = new QuietTrimPolicy(Options, 0, TimeSpan.Zero);
        var allocated = 0L;

        // A burst: 40 MiB and a full core a second for five seconds, never quiet.
        for (var second = 0; second < 5; second++)
        {
            allocated += 40 * MiB;
            Assert.False(policy.Sample(allocated, Cpu(second + 1, 100)), $"trimmed under load at second {second}");
        }

        // Quiet: 100 KiB and 3% of a core a second. Due once three quiet seconds are behind it, not before.
        var busyCpu = Cpu(5, 100);
        Assert.False(policy.Sample(allocated += 100 * 1024, busyCpu + Cpu(1, 3)));
        Assert.False(policy.Sample(allocated += 100 * 1024, busyCpu + Cpu(2, 3)));
        Assert.True(policy.Sample(allocated += 100 * 1024, busyCpu + Cpu(3, 3)));
        policy.Trimmed(allocated);

        // Still quiet, but nothing new to give back: never again until another burst.
        for (var quiet = 4; quiet < 34; quiet++)
        {
            Assert.False(policy.Sample(allocated += 100 * 1024, busyCpu + Cpu(quiet, 3)), $"trimmed again at quiet second {quiet}");
        }
    }

    [Fact]
    public void AllocationFreeLoad_AfterABurst_IsNotQuiet()
    {
        // A fan-out allocates next to nothing but keeps a core busy: no trim in the middle of it.
        var policy = new QuietTrimPolicy(Options, 0, TimeSpan.Zero);
        Assert.False(policy.Sample(200 * MiB, Cpu(1, 100)));
        for (var second = 2; second < 30; second++)
        {
            Assert.False(policy.Sample(200 * MiB, Cpu(1, 100) + Cpu(second - 1, 90)), $"trimmed during allocation-free load at second {second}");
        }
    }

    [Fact]
    public void SmallBurst_IsNotWorthAPause()
    {
        var policy = new QuietTrimPolicy(Options, 1000 * MiB, TimeSpan.Zero);
        var allocated = 1000 * MiB + (20 * MiB);
        for (var second = 0; second < 10; second++)
        {
            Assert.False(policy.Sample(allocated, TimeSpan.Zero));
        }
    }

    [Fact]
    public void SteadyLoad_NeverTrims()
    {
        var policy = new QuietTrimPolicy(Options, 0, TimeSpan.Zero);
        var allocated = 0L;
        for (var second = 0; second < 60; second++)
        {
            // 2 MiB a second (above the quiet rate, 120 MiB in all) at a CPU use that alone would count as quiet.
            Assert.False(policy.Sample(allocated += 2 * MiB, Cpu(second + 1, 1)), $"trimmed under steady load at second {second}");
        }
    }

    [Fact]
    public void QuietAtTheLimits_CountsAsQuiet_AndJustAboveDoesNot()
    {
        var atLimits = new QuietTrimPolicy(Options, 0, TimeSpan.Zero);
        var allocatingMore = new QuietTrimPolicy(Options, 0, TimeSpan.Zero);
        var busier = new QuietTrimPolicy(Options, 0, TimeSpan.Zero);
        foreach (var policy in new[] { atLimits, allocatingMore, busier })
        {
            Assert.False(policy.Sample(64 * MiB, TimeSpan.Zero));
        }

        for (var second = 1; second <= 3; second++)
        {
            var quiet = atLimits.Sample((64 * MiB) + (second * MiB), Cpu(second, 10));
            var allocating = allocatingMore.Sample((64 * MiB) + (second * (MiB + 1)), Cpu(second, 10));
            var busy = busier.Sample((64 * MiB) + (second * MiB), Cpu(second, 10) + TimeSpan.FromMilliseconds(second));
            Assert.Equal(second == 3, quiet);
            Assert.False(allocating);
            Assert.False(busy);
        }
    }

    [Fact]
    public async Task Server_TrimsAfterABurst_AndCountsIt()
    {
        // Every rate counts as quiet here: tests beside this one allocate and compute in the same process.
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Memory:TrimAfterMiB"] = "1",
            ["Relay:Memory:QuietSeconds"] = "1",
            ["Relay:Memory:QuietKiBPerSecond"] = "100000000",
            ["Relay:Memory:QuietCpuPercent"] = "100000",
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

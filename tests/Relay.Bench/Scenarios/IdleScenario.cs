using System.Diagnostics;
using Relay.Bench.Load;
using Relay.Bench.Targets;

namespace Relay.Bench.Scenarios;

/// <summary>
/// Idle subscribed connections: as many as the server's file-descriptor limit allows, each subscribed to a channel
/// of its own, held by several client processes (each process has the same limit) from different 127.0.0.x
/// addresses. Reports the server's resident memory per connection and the CPU it burns while nothing happens.
/// </summary>
internal static class IdleScenario
{
    public static async Task<ScenarioResult> RunAsync(Target target, int connections, int perProcess, BenchEnvironment environment, TimeSpan? settle = null)
    {
        var progress = new Progress($"idle/{target.Name}");
        progress.Say("starting the server");
        await using var running = await target.StartAsync(environment).ConfigureAwait(false);

        // Warm the server's code paths with a few connections, then take the baseline once they are gone.
        var warm = await Fleet.ConnectAsync(target, running.WebSocketUri, 200, i => $"warm-{i}", _ => new StreamScanner(target.Tokens), progress).ConfigureAwait(false);
        await Fleet.CloseAsync(warm).ConfigureAwait(false);
        await Task.Delay(TimeSpan.FromSeconds(3)).ConfigureAwait(false);
        var baseline = running.Server.RssBytes();
        progress.Say($"baseline RSS {baseline / 1048576.0:0.0} MiB; opening {connections:N0} connections from {(connections + perProcess - 1) / perProcess} client processes");

        var redis0 = await RedisStats.SampleAsync(running.Companion).ConfigureAwait(false);
        var children = new List<Process>();
        try
        {
            var ready = new List<Task>();
            for (int offset = 0, child = 0; offset < connections; offset += perProcess, child++)
            {
                var count = Math.Min(perProcess, connections - offset);
                var process = StartClient(target, running.WebSocketUri, count, child, progress);
                children.Add(process);
                ready.Add(WaitReadyAsync(process, child, progress));
            }

            await Task.WhenAll(ready).WaitAsync(TimeSpan.FromMinutes(10)).ConfigureAwait(false);
            var wait = settle ?? TimeSpan.FromSeconds(10);
            progress.Say($"all connections subscribed; letting the server settle for {wait.TotalSeconds:0} s");
            await Task.Delay(wait).ConfigureAwait(false);
            var connecting = (await RedisStats.SampleAsync(running.Companion).ConfigureAwait(false))?.Since(redis0!);
            var cpu0 = running.Server.CpuTime();
            var idle0 = await RedisStats.SampleAsync(running.Companion).ConfigureAwait(false);
            var clock = Stopwatch.StartNew();
            await Task.Delay(wait).ConfigureAwait(false);
            var cpu = (running.Server.CpuTime() - cpu0) / clock.Elapsed;
            var idle = (await RedisStats.SampleAsync(running.Companion).ConfigureAwait(false))?.Since(idle0!);
            var rss = running.Server.RssBytes();
            var alive = children.Count(c => !c.HasExited);
            var result = new ScenarioResult
            {
                Scenario = "idle",
                Target = target.Name,
                Connections = connections,
                RssPerConnectionBytes = (rss - baseline) / (double)connections,
                ServerCpuCores = cpu,
                PeakRssBytes = running.Server.PeakRssBytes(),
                RedisCommandsPer = connecting is null ? null : connecting.Commands / (double)connections,
                RedisBytesPer = connecting is null ? null : (connecting.BytesIn + connecting.BytesOut) / (double)connections,
                RedisCpuMicrosPer = connecting is null ? null : connecting.Cpu.TotalMicroseconds / connections,
                RedisCpuCores = idle is null ? null : idle.Cpu / clock.Elapsed,
                Error = alive == children.Count ? null : $"{children.Count - alive} client processes lost their connections",
            };
            if (connecting is not null)
            {
                progress.Say($"redis-server: {result.RedisCommandsPer:0.00} commands, {result.RedisBytesPer:N0} bytes and {result.RedisCpuMicrosPer:0.0} µs CPU per connection while connecting; calls per connection: {connecting.Busiest(connections)}");
            }

            progress.Say($"RSS {rss / 1048576.0:0.0} MiB: {result.RssPerConnectionBytes / 1024:0.0} KiB per connection; idle CPU {cpu:0.000} cores");
            return result;
        }
        finally
        {
            foreach (var child in children)
            {
                if (!child.HasExited)
                {
                    child.StandardInput.Close();
                    if (!child.WaitForExit(5000))
                    {
                        child.Kill();
                    }
                }

                child.Dispose();
            }
        }
    }

    private static Process StartClient(Target target, Uri uri, int count, int child, Progress progress)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(typeof(IdleScenario).Assembly.Location);
        foreach (var argument in new[] { "idle-client", "--target", target.Name, "--uri", uri.ToString(), "--count", count.ToString(System.Globalization.CultureInfo.InvariantCulture), "--child", child.ToString(System.Globalization.CultureInfo.InvariantCulture) })
        {
            info.ArgumentList.Add(argument);
        }

        progress.Say($"client process {child}: {count:N0} connections");
        return Process.Start(info) ?? throw new InvalidOperationException("could not start a client process");
    }

    private static async Task WaitReadyAsync(Process process, int child, Progress progress)
    {
        while (await process.StandardOutput.ReadLineAsync().ConfigureAwait(false) is { } line)
        {
            if (line == "ready")
            {
                return;
            }

            progress.Say($"client {child}: {line}");
        }

        throw new InvalidOperationException($"client process {child} exited with code {(process.WaitForExit(1000) ? process.ExitCode : -1)} before its connections were ready");
    }

    /// <summary>The child side: opens the connections, says "ready", and holds them until standard input closes.</summary>
    public static async Task<int> RunClientAsync(Target target, Uri uri, int count, int child)
    {
        var progress = new Progress($"child {child}");
        // Each client process takes its own 127.0.0.x addresses, so no two share an ephemeral port range.
        var sockets = await Fleet.ConnectAsync(target, uri, count, i => $"idle-{child}-{i}", _ => new StreamScanner(target.Tokens), progress, sourceOffset: 1 + (child * 4)).ConfigureAwait(false);
        Console.WriteLine("ready");
        await Console.In.ReadToEndAsync().ConfigureAwait(false);
        await Fleet.CloseAsync(sockets).ConfigureAwait(false);
        return 0;
    }
}

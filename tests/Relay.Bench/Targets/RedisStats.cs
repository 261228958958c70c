using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Relay.Bench.Targets;

/// <summary>
/// What a target's redis-server (the <c>relay-redis</c> companion) has done so far: commands its clients sent (a script
/// is one), bytes in and out, and its CPU. Two samples around a measured interval give Redis's cost per publish or per
/// subscribe, the figures the capacity model (docs/capacity.md) is built from. Read with <c>INFO stats</c> over a plain
/// socket (an inline command, one bulk reply), so the harness needs no Redis client.
/// </summary>
internal sealed record RedisStats(long Commands, long BytesIn, long BytesOut, TimeSpan Cpu, IReadOnlyDictionary<string, long> Calls)
{
    /// <summary>A sample of <paramref name="companion"/> when it is a redis-server; null for any other target.</summary>
    public static async Task<RedisStats?> SampleAsync(ServerProcess? companion)
    {
        if (companion is null || companion.Name != "redis")
        {
            return null;
        }

        var cpu = companion.CpuTime();
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, companion.Port).ConfigureAwait(false);
        var stream = client.GetStream();
        await stream.WriteAsync("INFO everything\r\n"u8.ToArray()).ConfigureAwait(false);

        // "$<length>\r\n<text>\r\n": read until the whole text is in.
        var received = new MemoryStream();
        var buffer = new byte[16 * 1024];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            var count = await stream.ReadAsync(buffer, timeout.Token).ConfigureAwait(false);
            if (count == 0)
            {
                throw new InvalidOperationException("redis-server closed the connection before answering INFO");
            }

            received.Write(buffer, 0, count);
            var text = Encoding.ASCII.GetString(received.GetBuffer(), 0, (int)received.Length);
            var header = text.IndexOf("\r\n", StringComparison.Ordinal);
            if (header > 0 && text[0] == '$' && text.Length >= header + 2 + int.Parse(text.AsSpan(1, header - 1), CultureInfo.InvariantCulture))
            {
                return new RedisStats(Field(text, "total_commands_processed"), Field(text, "total_net_input_bytes"), Field(text, "total_net_output_bytes"), cpu, CallsByCommand(text));
            }
        }
    }

    /// <summary>This sample less an earlier one.</summary>
    public RedisStats Since(RedisStats earlier) => new(
        Commands - earlier.Commands,
        BytesIn - earlier.BytesIn,
        BytesOut - earlier.BytesOut,
        Cpu - earlier.Cpu,
        Calls.ToDictionary(static c => c.Key, c => c.Value - earlier.Calls.GetValueOrDefault(c.Key)));

    /// <summary>The commands called most (scripts' own calls included, as Redis counts them), per <paramref name="per"/> operations.</summary>
    public string Busiest(long per, int count = 8) => string.Join(", ", Calls
        .Where(static c => c.Value > 0 && c.Key is not ("info" or "ping"))
        .OrderByDescending(static c => c.Value)
        .Take(count)
        .Select(c => FormattableString.Invariant($"{c.Key} {c.Value / (double)per:0.00}")));

    // "cmdstat_evalsha:calls=123,usec=…" lines of INFO commandstats.
    private static Dictionary<string, long> CallsByCommand(string info)
    {
        var calls = new Dictionary<string, long>();
        foreach (var line in info.Split("\r\n"))
        {
            if (line.StartsWith("cmdstat_", StringComparison.Ordinal) && line.IndexOf(":calls=", StringComparison.Ordinal) is var colon and > 0)
            {
                var start = colon + ":calls=".Length;
                var end = line.IndexOf(',', start);
                calls[line[8..colon]] = long.Parse(line.AsSpan(start, (end < 0 ? line.Length : end) - start), CultureInfo.InvariantCulture);
            }
        }

        return calls;
    }

    private static long Field(string info, string name)
    {
        var start = info.IndexOf(name + ":", StringComparison.Ordinal);
        if (start < 0)
        {
            throw new InvalidOperationException($"INFO stats has no {name}");
        }

        start += name.Length + 1;
        var end = info.IndexOf('\r', start);
        return long.Parse(info.AsSpan(start, end - start), CultureInfo.InvariantCulture);
    }
}

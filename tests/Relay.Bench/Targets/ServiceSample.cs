using System.Globalization;
using System.Text;

namespace Relay.Bench.Targets;

/// <summary>
/// CPU time and fanned-out messages (<c>relay_fanout_messages_total</c>, fan-out processes only) of a target's separate
/// service processes at one moment: two samples give each process's cores and messages per second over the interval.
/// </summary>
internal sealed record ServiceSample(TimeSpan[] Cpu, long?[] FannedOut)
{
    public static async Task<ServiceSample> TakeAsync(IReadOnlyList<ServerProcess> services)
    {
        var cpu = new TimeSpan[services.Count];
        var fannedOut = new long?[services.Count];
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        for (var i = 0; i < services.Count; i++)
        {
            cpu[i] = services[i].CpuTime();
            if (services[i].Name.StartsWith("fanout", StringComparison.Ordinal))
            {
                var text = await http.GetStringAsync(new Uri($"http://127.0.0.1:{services[i].Port}/metrics")).ConfigureAwait(false);
                fannedOut[i] = (long)(PrometheusText.Sum(text, "relay_fanout_messages_total") ?? 0);
            }
        }

        return new ServiceSample(cpu, fannedOut);
    }

    public static string Describe(IReadOnlyList<ServerProcess> services, ServiceSample before, ServiceSample after, TimeSpan elapsed)
    {
        var text = new StringBuilder();
        for (var i = 0; i < services.Count; i++)
        {
            text.Append(CultureInfo.InvariantCulture, $"{(i == 0 ? "" : "; ")}{services[i].Name}: {(after.Cpu[i] - before.Cpu[i]) / elapsed:0.00} cores");
            if (after.FannedOut[i] is { } end && before.FannedOut[i] is { } start)
            {
                text.Append(CultureInfo.InvariantCulture, $", {(end - start) / elapsed.TotalSeconds:N0} msgs/s fanned out");
            }
        }

        return text.ToString();
    }
}

using System.Globalization;

namespace Relay.Bench.Targets;

/// <summary>Reads figures out of a service's <c>/metrics</c> (Prometheus text), so the harness needs no client library.</summary>
internal static class PrometheusText
{
    /// <summary>The sum of every series of <paramref name="name"/> (whatever its labels), or null when there is none.</summary>
    public static double? Sum(string text, string name)
    {
        double? sum = null;
        foreach (var line in text.Split('\n'))
        {
            if (line.Length > name.Length && line.StartsWith(name, StringComparison.Ordinal) && line[name.Length] is ' ' or '{')
            {
                var value = line[(line.LastIndexOf('}') is var brace and >= 0 ? brace + 1 : name.Length)..].Trim().Split(' ')[0];
                sum = (sum ?? 0) + double.Parse(value, CultureInfo.InvariantCulture);
            }
        }

        return sum;
    }
}

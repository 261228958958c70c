using System.Globalization;

namespace Relay.Testing;

/// <summary>Reads one sample of a label-less series out of <c>/metrics</c> text.</summary>
public static class PrometheusText
{
    /// <summary>
    /// The value of <paramref name="name"/> (written <c>name value</c>, or <c>name{} value</c> as the OpenTelemetry
    /// exporter writes a series without labels: both are one series); null when the text has no such sample.
    /// </summary>
    public static double? Value(string text, string name)
    {
        ArgumentNullException.ThrowIfNull(text);
        foreach (var line in text.Split('\n'))
        {
            var rest = line.StartsWith(name + "{} ", StringComparison.Ordinal) ? line[(name.Length + 3)..]
                : line.StartsWith(name + " ", StringComparison.Ordinal) ? line[(name.Length + 1)..]
                : null;
            if (rest is not null)
            {
                var value = rest.Split(' ')[0];
                return value == "+Inf" ? double.PositiveInfinity : double.Parse(value, CultureInfo.InvariantCulture);
            }
        }

        return null;
    }

    /// <summary>Reads <paramref name="name"/> from <c>/metrics</c> at <paramref name="baseAddress"/>; fails when it is missing.</summary>
    public static async Task<long> ScrapeAsync(Uri baseAddress, string name)
    {
        using var http = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(10) };
        return await ScrapeAsync(http, name).ConfigureAwait(false);
    }

    /// <summary>Reads <paramref name="name"/> from <c>/metrics</c> through <paramref name="http"/>; fails when it is missing.</summary>
    public static async Task<long> ScrapeAsync(HttpClient http, string name)
    {
        ArgumentNullException.ThrowIfNull(http);
        var text = await http.GetStringAsync(new Uri("metrics", UriKind.Relative)).ConfigureAwait(false);
        return (long)(Value(text, name) ?? throw new InvalidOperationException($"no {name} in /metrics:\n{text}"));
    }
}

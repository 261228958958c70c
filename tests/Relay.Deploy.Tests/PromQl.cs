using System.Text.Json;
using System.Text.RegularExpressions;

namespace Relay.Deploy.Tests;

/// <summary>
/// PromQL as Prometheus's own grammar reads it (npm @prometheus-io/lezer-promql, the parser of Prometheus's web UI,
/// run with Node.js from tests/Relay.Deploy.Tests/hcl): each query's metric names (the selectors' names, and
/// <c>__name__="…"</c>), its label matchers, and where it does not parse.
/// </summary>
internal static partial class PromQl
{
    /// <summary>What one query reads: metric names, label matchers, and syntax errors (none when it parses).</summary>
    public sealed record Query(IReadOnlyList<string> Names, IReadOnlyList<(string Label, string Op, string Value)> Matchers, IReadOnlyList<string> Errors);


    /// <summary>Grafana's label_values(query, label) templating function: only its query is PromQL.</summary>
    [GeneratedRegex(@"^\s*label_values\((?<query>.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", RegexOptions.Singleline)]
    private static partial Regex LabelValues();

    /// <summary>Grafana's interval variables ($__rate_interval, ${__range}, …), which stand where a duration goes.</summary>
    [GeneratedRegex(@"\$\{?__(?:rate_interval|interval|range)(?::[a-z]+)?\}?")]
    private static partial Regex IntervalVariable();

    /// <summary>
    /// A Grafana query as the PromQL Grafana sends: label_values unwrapped, interval variables as a duration. Other
    /// variables ($namespace) belong inside label values' strings, where PromQL takes any text.
    /// </summary>
    public static string FromGrafana(string query)
    {
        ArgumentNullException.ThrowIfNull(query);
        var match = LabelValues().Match(query);
        return IntervalVariable().Replace(match.Success ? match.Groups["query"].Value : query, "5m");
    }

    /// <summary>Parses <paramref name="queries"/> in one Node.js run.</summary>
    public static IReadOnlyList<Query> Parse(IReadOnlyList<string> queries)
    {
        ArgumentNullException.ThrowIfNull(queries);
        ParserScript.Require("@prometheus-io/lezer-promql", "the PromQL parser");
        var (exitCode, output, error) = ParserScript.Run("promql.cjs", [], JsonSerializer.Serialize(queries), TimeSpan.FromSeconds(60));
        if (exitCode != 0)
        {
            throw new InvalidOperationException("promql.cjs failed: " + error);
        }

        using var json = JsonDocument.Parse(output);
        return json.RootElement.EnumerateArray().Select(static q =>
        {
            var matchers = q.GetProperty("matchers").EnumerateArray()
                .Select(static m => (m.GetProperty("label").GetString()!, m.GetProperty("op").GetString()!, m.GetProperty("value").GetString()!))
                .ToList();
            var names = q.GetProperty("names").EnumerateArray().Select(static n => n.GetString()!)
                .Concat(matchers.Where(static m => m.Item1 == "__name__" && m.Item2 == "=").Select(static m => m.Item3))
                .ToList();
            return new Query(names, matchers, q.GetProperty("errors").EnumerateArray().Select(static e => e.GetString()!).ToList());
        }).ToList();
    }
}

using System.Text.Json;
using System.Text.RegularExpressions;
using YamlDotNet.RepresentationModel;

namespace Relay.Deploy.Tests;

/// <summary>
/// infra/observability: the Grafana dashboards (JSON), the alert rules (a PrometheusRule), the PodMonitor, and the
/// checks they must pass: every query names only series Relay's hosts export, or a series from outside Relay that
/// docs/operations.md lists with its exporter.
/// </summary>
internal static partial class Observability
{
    public static string Folder => Repo.PathOf("infra", "observability");

    public static string DashboardFolder => Path.Combine(Folder, "grafana", "dashboards");

    public static string RulesFile => Path.Combine(Folder, "prometheus", "relay-rules.yaml");

    public static string OperationsDoc => Repo.PathOf("docs", "operations.md");

    public static IReadOnlyList<string> DashboardFiles =>
        Directory.EnumerateFiles(DashboardFolder, "*.json").Order(StringComparer.Ordinal).ToList();

    [GeneratedRegex(@"^\|\s*`(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)`\s*\|", RegexOptions.Multiline)]
    private static partial Regex TableName();

    [GeneratedRegex(@"\bhttp_route\s*=\s*""(?<route>[^""]*)""")]
    private static partial Regex RouteMatcher();

    [GeneratedRegex(@"\b(?<label>service|container)\s*(?<op>=~|=)\s*""(?<value>[^""]*)""")]
    private static partial Regex ServiceMatcher();

    /// <summary>
    /// The series from outside Relay that queries may read: the first column of the table under "## Series from
    /// outside Relay" in docs/operations.md (each with the exporter that writes it).
    /// </summary>
    public static IReadOnlySet<string> ExternalSeries()
    {
        var doc = File.ReadAllText(OperationsDoc);
        var start = doc.IndexOf("## Series from outside Relay", StringComparison.Ordinal);
        Assert.True(start >= 0, "docs/operations.md has no '## Series from outside Relay' section");
        var end = doc.IndexOf("\n## ", start + 1, StringComparison.Ordinal);
        return TableName().Matches(doc[start..(end < 0 ? doc.Length : end)]).Select(static m => m.Groups["name"].Value).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>Every PromQL query of a dashboard (panel targets, nested rows' panels, template variables), with where it is.</summary>
    public static IEnumerable<(string Where, string Query)> DashboardQueries(string name, JsonElement dashboard)
    {
        foreach (var (where, element) in Walk(name, dashboard))
        {
            if (element.ValueKind == JsonValueKind.Object && element.TryGetProperty("expr", out var expr) && expr.ValueKind == JsonValueKind.String)
            {
                yield return (where, expr.GetString()!);
            }
        }

        if (dashboard.TryGetProperty("templating", out var templating))
        {
            foreach (var variable in templating.GetProperty("list").EnumerateArray().Where(static v => v.GetProperty("type").GetString() == "query"))
            {
                var query = variable.GetProperty("query");
                var text = query.ValueKind == JsonValueKind.Object ? query.GetProperty("query").GetString()! : query.GetString()!;
                yield return ($"{name}: variable {variable.GetProperty("name").GetString()}", text);
            }
        }
    }

    /// <summary>Every rule of a PrometheusRule document: (group, alert or record name, rule).</summary>
    public static IEnumerable<(string Group, string Name, YamlMappingNode Rule)> Rules(YamlMappingNode document) =>
        from @group in document.Items("spec", "groups").Cast<YamlMappingNode>()
        from rule in @group.Items("rules").Cast<YamlMappingNode>()
        select (@group.Text("name")!, rule.Text("alert") ?? rule.Text("record")!, rule);

    /// <summary>
    /// The metrics each query names that neither Relay exports (<paramref name="exported"/>) nor docs/operations.md
    /// lists as from outside Relay; the label values service= and container= name that are not Relay's Deployments or
    /// containers.
    /// </summary>
    public static List<string> Problems(IEnumerable<(string Where, string Query)> queries, IReadOnlySet<string> exported)
    {
        var external = ExternalSeries();
        var deployments = Manifests.Base.OfKind("Deployment").Select(static d => d.Name()).ToHashSet(StringComparer.Ordinal);
        var containers = Manifests.Base.OfKind("Deployment").SelectMany(static d => d.Containers()).Select(static c => c.Text("name")!).ToHashSet(StringComparer.Ordinal);
        var routes = HostFacts.ProbePaths("Relay.Standalone");
        var problems = new List<string>();
        foreach (var (where, query) in queries)
        {
            foreach (var name in PromQl.MetricNamesOfGrafanaQuery(query).Distinct())
            {
                if (!exported.Contains(name) && !external.Contains(name))
                {
                    problems.Add($"{where}: {name} is not a series Relay exports, nor one docs/operations.md lists from outside Relay");
                }
            }

            foreach (var route in RouteMatcher().Matches(query).Select(static m => m.Groups["route"].Value).Where(r => !routes.Contains(r)))
            {
                problems.Add($"{where}: http_route {route} is not a route Relay's hosts map");
            }

            foreach (Match matcher in ServiceMatcher().Matches(query))
            {
                var known = matcher.Groups["label"].Value == "service" ? deployments : containers;
                var value = matcher.Groups["value"].Value;
                var values = matcher.Groups["op"].Value == "=" ? [value] : value.Split('|');

                // A pattern (relay-.*) or a Grafana variable ($service) stands for what it matches; literal names must exist.
                foreach (var literal in values.Where(static v => v.All(static c => char.IsAsciiLetterOrDigit(c) || c == '-')))
                {
                    if (!known.Contains(literal))
                    {
                        problems.Add($"{where}: {matcher.Groups["label"].Value} {literal} is not one of the base's {(known == deployments ? "Deployments" : "containers")} ({string.Join(", ", known.Order(StringComparer.Ordinal))})");
                    }
                }
            }
        }

        return problems;
    }

    private static IEnumerable<(string Where, JsonElement Element)> Walk(string where, JsonElement element)
    {
        yield return (where, element);
        if (element.ValueKind == JsonValueKind.Object)
        {
            var title = element.TryGetProperty("title", out var t) && t.ValueKind == JsonValueKind.String ? $"{where}: {t.GetString()}" : where;
            foreach (var property in element.EnumerateObject())
            {
                foreach (var inner in Walk(title, property.Value))
                {
                    yield return inner;
                }
            }
        }
        else if (element.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in element.EnumerateArray())
            {
                foreach (var inner in Walk(where, item))
                {
                    yield return inner;
                }
            }
        }
    }
}

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
    /// What is wrong with each query: it does not parse as PromQL; it names a metric that neither Relay exports
    /// (<paramref name="exported"/>) nor docs/operations.md lists as from outside Relay; it selects by name with a
    /// pattern (which no check can follow); its service=, container= or http_route= values are not Relay's
    /// Deployments, containers or routes. Dashboards' queries are taken as Grafana sends them (<see cref="PromQl.FromGrafana"/>).
    /// </summary>
    public static List<string> Problems(IReadOnlyList<(string Where, string Query)> queries, IReadOnlySet<string> exported)
    {
        var external = ExternalSeries();
        var known = new Dictionary<string, IReadOnlySet<string>>
        {
            ["service"] = Manifests.Base.OfKind("Deployment").Select(static d => d.Name()).ToHashSet(StringComparer.Ordinal),
            ["container"] = Manifests.Base.OfKind("Deployment").SelectMany(static d => d.Containers()).Select(static c => c.Text("name")!).ToHashSet(StringComparer.Ordinal),
            ["http_route"] = HostFacts.ProbePaths("Relay.Standalone"),
        };
        var parsed = PromQl.Parse(queries.Select(static q => PromQl.FromGrafana(q.Query)).ToList());
        var problems = new List<string>();
        foreach (var ((where, query), result) in queries.Zip(parsed))
        {
            problems.AddRange(result.Errors.Select(e => $"{where}: does not parse as PromQL {e}"));
            if (result.Names.Count == 0 && !result.Matchers.Any())
            {
                problems.Add($"{where}: reads no series ({query})");
            }

            foreach (var name in result.Names.Distinct())
            {
                if (!exported.Contains(name) && !external.Contains(name))
                {
                    problems.Add($"{where}: {name} is not a series Relay exports, nor one docs/operations.md lists from outside Relay");
                }
            }

            foreach (var (label, op, value) in result.Matchers)
            {
                if (label == "__name__" && op != "=")
                {
                    problems.Add($"{where}: selects series by a pattern of names ({op}\"{value}\"): name each series, so the checks can follow it");
                }

                if (!known.TryGetValue(label, out var values) || op is "!=" or "!~")
                {
                    continue;
                }

                // A pattern (relay-.*) or a Grafana variable ($service) stands for what it matches; literal names must exist.
                var literals = op == "=" ? [value] : value.Split('|').Where(static v => v.All(static c => char.IsAsciiLetterOrDigit(c) || c is '-' or '/' or '{' or '}' or '_' or '.'));
                foreach (var literal in literals.Where(v => !v.Contains('$', StringComparison.Ordinal) && !values.Contains(v)))
                {
                    problems.Add($"{where}: {label} {literal} is not one of {(label == "http_route" ? "the routes Relay's hosts map" : $"the base's {label}s ({string.Join(", ", values.Order(StringComparer.Ordinal))})")}");
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

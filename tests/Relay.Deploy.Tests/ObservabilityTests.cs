using System.Text.Json;
using System.Text.RegularExpressions;
using YamlDotNet.RepresentationModel;

namespace Relay.Deploy.Tests;

/// <summary>
/// The dashboards and alert rules under infra/observability parse, read only series a running Relay exports (scraped
/// from the standalone host with traffic, and every series Relay's instruments can produce), and reach a cluster
/// through kustomize; every alert says how urgent it is and where its runbook is.
/// </summary>
public sealed partial class ObservabilityTests(ExportedMetrics exported) : IClassFixture<ExportedMetrics>
{
    // kubectl apply keeps the whole object in an annotation, which may not pass 256 KiB.
    private const int MaxDashboardBytes = 200 * 1024;

    [GeneratedRegex(@"^#+\s+(?<title>.+?)\s*$", RegexOptions.Multiline)]
    private static partial Regex Heading();

    private static IEnumerable<(string Where, string Query)> DashboardQueries() =>
        Observability.DashboardFiles.SelectMany(static f => Observability.DashboardQueries(Path.GetFileName(f), JsonDocument.Parse(File.ReadAllText(f)).RootElement));

    private static IEnumerable<(string Where, string Query)> RuleQueries(YamlMappingNode rules) =>
        Observability.Rules(rules).Select(static r => ($"relay-rules.yaml: {r.Group}/{r.Name}", r.Rule.Text("expr")!));

    [Fact]
    public void InstrumentScan_FindsRelaysInstruments_AndTheScrapeNamesThemAsDerived()
    {
        var instruments = RelayInstruments.All;
        Assert.True(instruments.Count >= 25, $"only {instruments.Count} instruments found: is the scan broken?");
        Assert.Equal(instruments.Count, instruments.Select(static i => i.Name).Distinct().Count());

        // Every relay_* series the host wrote is one the naming rules derive from an instrument in the source.
        var derived = RelayInstruments.SampleNames;
        var scraped = exported.SampleNames.Where(static n => n.StartsWith("relay_", StringComparison.Ordinal)).ToList();
        Assert.True(scraped.Count >= 15, "the scrape holds few relay_ series:\n" + exported.Text);
        Assert.All(scraped, n => Assert.True(derived.Contains(n), $"/metrics has {n}, which no instrument in the source is named as"));

        // Observable instruments report on every scrape: each one's derived name is there, as written.
        Assert.All(instruments.Where(static i => i.Kind.StartsWith("Observable", StringComparison.Ordinal)), i => Assert.True(i.SampleNames.All(exported.SampleNames.Contains), $"{i.Name} ({i.File}) is not on /metrics as {i.Family}"));
    }

    [Fact]
    public void Dashboards_Parse_WithUniqueUids_PanelsAndTheDatasourceVariable()
    {
        Assert.True(Observability.DashboardFiles.Count >= 2);
        var uids = new HashSet<string>(StringComparer.Ordinal);
        foreach (var file in Observability.DashboardFiles)
        {
            var name = Repo.Relative(file);
            Assert.True(new FileInfo(file).Length < MaxDashboardBytes, $"{name} is over {MaxDashboardBytes} bytes: kubectl apply cannot keep it in its annotation");
            using var json = JsonDocument.Parse(File.ReadAllText(file));
            var root = json.RootElement;
            Assert.True(uids.Add(root.GetProperty("uid").GetString()!), $"{name}: uid is another dashboard's");
            Assert.False(string.IsNullOrWhiteSpace(root.GetProperty("title").GetString()));
            var variables = root.GetProperty("templating").GetProperty("list").EnumerateArray().ToList();
            Assert.Contains(variables, static v => v.GetProperty("type").GetString() == "datasource" && v.GetProperty("query").GetString() == "prometheus");

            var panels = root.GetProperty("panels").EnumerateArray().Where(static p => p.GetProperty("type").GetString() != "row").ToList();
            Assert.True(panels.Count >= 8, $"{name}: {panels.Count} panels");
            foreach (var panel in panels)
            {
                var title = panel.GetProperty("title").GetString();
                Assert.Equal("${datasource}", panel.GetProperty("datasource").GetProperty("uid").GetString());
                Assert.True(panel.GetProperty("targets").GetArrayLength() > 0, $"{name}: panel {title} has no query");
                Assert.All(panel.GetProperty("targets").EnumerateArray(), t => Assert.False(string.IsNullOrWhiteSpace(t.GetProperty("expr").GetString()), $"{name}: panel {title} has an empty query"));
            }
        }
    }

    [Fact]
    public void DashboardQueries_NameOnlySeriesRelayExports()
    {
        var queries = DashboardQueries().ToList();
        Assert.True(queries.Count > 40, $"only {queries.Count} dashboard queries found");
        var problems = Observability.Problems(queries, exported.Names);
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public void RuleQueries_NameOnlySeriesRelayExports()
    {
        var queries = RuleQueries(Yaml.Load(Observability.RulesFile)).ToList();
        Assert.True(queries.Count >= 10);
        var problems = Observability.Problems(queries, exported.Names);
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    /// <summary>Each kind of drift is reported: the checks run on the real files with one query changed.</summary>
    [Theory]
    [InlineData("grafana/dashboards/relay-overview.json", "sum(relay_ingress_connections{", "sum(relay_ingress_conections{", "relay_ingress_conections is not a series Relay exports")]
    [InlineData("grafana/dashboards/relay-overview.json", "relay_ingress_publish_to_deliver_seconds_bucket", "relay_ingress_publish_to_deliver_bucket", "relay_ingress_publish_to_deliver_bucket is not a series")]
    [InlineData("grafana/dashboards/relay-services.json", "dotnet_process_memory_working_set_bytes", "process_working_set_bytes", "process_working_set_bytes is not a series")]
    [InlineData("grafana/dashboards/relay-overview.json", "http_route=\\\"/v1/channels/{channel}/messages\\\"", "http_route=\\\"/v1/channel/{channel}/messages\\\"", "http_route /v1/channel/{channel}/messages is not one of the routes Relay's hosts map")]
    [InlineData("prometheus/relay-rules.yaml", "relay_ingress_gap_messages_unrepaired_total", "relay_ingress_gaps_unrepaired_total", "relay_ingress_gaps_unrepaired_total is not a series")]
    [InlineData("prometheus/relay-rules.yaml", "kube_pod_container_status_restarts_total", "kube_pod_container_restarts_total", "kube_pod_container_restarts_total is not a series")]
    [InlineData("prometheus/relay-rules.yaml", "up{service=\"relay-routing\"}) == 0", "up{service=\"relay-router\"}) == 0", "service relay-router is not one of the base's services")]
    [InlineData("prometheus/relay-rules.yaml", "container=~\"ingress|routing|fanout|auth\"", "container=~\"ingress|router|fanout|auth\"", "container router is not one of the base's containers")]
    [InlineData("prometheus/relay-rules.yaml", "[5m]))) > 0.5", "[5m])) > 0.5", "RelayDeliveryLatencyHigh: does not parse as PromQL")]
    [InlineData("grafana/dashboards/relay-services.json", "sum by (pod) (kestrel_active_connections", "sum by (pod) kestrel_active_connections", "Kestrel connections: does not parse as PromQL")]
    [InlineData("grafana/dashboards/relay-overview.json", "sum(rate(relay_fanout_messages_total{", "sum(rate({__name__=~\\\"relay_fanout_.*\\\", ", "selects series by a pattern of names")]
    public void Checks_ReportAChangedQuery(string file, string from, string to, string expected)
    {
        var path = Path.Combine(Observability.Folder, file);
        var text = File.ReadAllText(path);
        Assert.Contains(from, text, StringComparison.Ordinal);
        var changed = text.Replace(from, to, StringComparison.Ordinal);
        var queries = file.EndsWith(".json", StringComparison.Ordinal)
            ? Observability.DashboardQueries(file, JsonDocument.Parse(changed).RootElement).ToList()
            : RuleQueries(LoadYaml(changed)).ToList();
        Assert.Contains(Observability.Problems(queries, exported.Names), p => p.Contains(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void EveryRelayInstrument_IsOnADashboard()
    {
        var read = PromQl.Parse(DashboardQueries().Select(static q => PromQl.FromGrafana(q.Query)).ToList()).SelectMany(static q => q.Names).ToHashSet(StringComparer.Ordinal);
        var missing = RelayInstruments.All.Where(i => !i.SampleNames.Any(read.Contains)).Select(static i => $"{i.Name} ({i.File})").ToList();
        Assert.True(missing.Count == 0, "no dashboard shows: " + string.Join(", ", missing));
    }

    [Fact]
    public void EveryAlert_HasForSeverityASummaryADescription_AndARunbookSection()
    {
        var headings = Heading().Matches(File.ReadAllText(Observability.OperationsDoc)).Select(static m => Anchor(m.Groups["title"].Value)).ToHashSet(StringComparer.Ordinal);
        var rules = Observability.Rules(Yaml.Load(Observability.RulesFile)).ToList();
        Assert.Equal("PrometheusRule", Yaml.Load(Observability.RulesFile).Text("kind"));
        Assert.Equal(rules.Count, rules.Select(static r => r.Name).Distinct().Count());
        foreach (var (group, name, rule) in rules)
        {
            var where = $"{group}/{name}";
            Assert.NotNull(rule.Text("alert"));
            Assert.Matches(@"^[1-9][0-9]*[smh]$", rule.Text("for") ?? $"{where} has no for:");
            Assert.Contains(rule.Text("labels", "severity"), new[] { "critical", "warning" });
            Assert.False(string.IsNullOrWhiteSpace(rule.Text("annotations", "summary")), $"{where} has no summary");
            Assert.False(string.IsNullOrWhiteSpace(rule.Text("annotations", "description")), $"{where} has no description");
            var runbook = rule.Text("annotations", "runbook_url") ?? "";
            Assert.True(runbook.StartsWith("docs/operations.md#", StringComparison.Ordinal), $"{where}: runbook_url {runbook} is not a section of docs/operations.md");
            Assert.True(headings.Contains(runbook.Split('#')[1]), $"{where}: docs/operations.md has no section #{runbook.Split('#')[1]}");
            Assert.Equal(Anchor(name), runbook.Split('#')[1]);
        }

        // What the brief says an operator must be woken for has a critical alert.
        Assert.Superset(new HashSet<string> { "RelayRoutingDown", "RelayPublishesFailing", "RelayFanOutBehind", "RelayDeliveryLatencyHigh", "RelayUnrepairedGaps", "RelayRedisDown", "RelayPodRestarting" },
            rules.Where(static r => r.Rule.Text("labels", "severity") == "critical").Select(static r => r.Name).ToHashSet());
    }

    [Fact]
    public void Kustomization_GeneratesEveryDashboard_ListsEveryManifest_AndTheProdOverlayIncludesIt()
    {
        var kustomization = Yaml.Load(Path.Combine(Observability.Folder, "kustomization.yaml"));
        var generated = kustomization.Items("configMapGenerator").SelectMany(static g => g.Items("files")).Select(static f => ((YamlScalarNode)f).Value!.Split('=')[^1]).ToList();
        Assert.Equal(Observability.DashboardFiles.Select(f => Path.GetRelativePath(Observability.Folder, f)).Order(StringComparer.Ordinal), generated.Order(StringComparer.Ordinal));
        Assert.Equal("1", kustomization.Text("generatorOptions", "labels", "grafana_dashboard"));
        Assert.Equal("true", kustomization.Text("generatorOptions", "disableNameSuffixHash"));

        var manifests = Directory.EnumerateFiles(Observability.Folder, "*.yaml", SearchOption.AllDirectories).Where(static f => Path.GetFileName(f) != "kustomization.yaml").Select(f => Path.GetRelativePath(Observability.Folder, f));
        var resources = kustomization.Items("resources").Select(static r => ((YamlScalarNode)r).Value!).ToList();
        Assert.Equal(manifests.Order(StringComparer.Ordinal), resources.Order(StringComparer.Ordinal));
        foreach (var resource in resources)
        {
            foreach (var doc in Yaml.LoadAll(Path.Combine(Observability.Folder, resource)))
            {
                Assert.StartsWith("monitoring.coreos.com/", doc.Text("apiVersion"), StringComparison.Ordinal);
                Assert.False(string.IsNullOrEmpty(doc.Name()), $"{resource}: a {doc.Text("kind")} without a name");
            }
        }

        var prod = Path.Combine(Manifests.Folder, "overlays", "prod");
        var included = Yaml.Load(Path.Combine(prod, "kustomization.yaml")).Items("resources").Select(r => Path.GetFullPath(Path.Combine(prod, ((YamlScalarNode)r).Value!)));
        Assert.Contains(Path.GetFullPath(Observability.Folder), included);
    }

    [Fact]
    public void PodMonitor_ScrapesEveryClusterService_OnItsPort_AtAPathItMaps_AsTheServiceLabel()
    {
        var monitor = Yaml.Load(Path.Combine(Observability.Folder, "prometheus", "podmonitor.yaml"));
        var expression = monitor.Items("spec", "selector", "matchExpressions").Cast<YamlMappingNode>().Single();
        Assert.Equal("In", expression.Text("operator"));
        var selected = expression.Items("values").Select(static v => ((YamlScalarNode)v).Value!).ToHashSet(StringComparer.Ordinal);
        var endpoint = monitor.Items("spec", "podMetricsEndpoints").Cast<YamlMappingNode>().Single();
        Assert.Contains(endpoint.Items("relabelings").Cast<YamlMappingNode>(), static r => r.Text("targetLabel") == "service" && r.Items("sourceLabels").Select(static s => ((YamlScalarNode)s).Value).SequenceEqual(["__meta_kubernetes_pod_label_" + "app_kubernetes_io_name"]));

        var scraped = new HashSet<string>(StringComparer.Ordinal);
        foreach (var deployment in Manifests.Base.OfKind("Deployment"))
        {
            var container = deployment.Containers().SingleOrDefault(static c => Repo.ClusterServices.Any(h => ImageNames.Of(h) == c.Text("image")));
            if (container is null)
            {
                continue;
            }

            var host = Repo.ClusterServices.Single(h => ImageNames.Of(h) == container.Text("image"));
            var label = deployment.Text("spec", "template", "metadata", "labels", expression.Text("key")!);
            Assert.True(label is not null && selected.Contains(label), $"the PodMonitor does not select {deployment.Name()} ({expression.Text("key")}: {label})");
            Assert.Contains(endpoint.Text("port"), container.Items("ports").Select(static p => p.Text("name")));
            Assert.Contains(endpoint.Text("path")!, HostFacts.ProbePaths(host));
            scraped.Add(label!);
        }

        Assert.Equal(Repo.ClusterServices.Count, scraped.Count);
        Assert.Equal(selected, scraped);
    }

    [Theory]
    [InlineData("sum by (le) (rate(relay_x_bucket{service=\"a\", le=~\"1|2\"}[$__rate_interval]))", "relay_x_bucket", "")]
    [InlineData("a / on (pod) group_left (node) b offset 5m", "a,b", "")]
    [InlineData("histogram_quantile(0.99, sum without(pod)(rate(h_bucket[5m]))) > 1e3 and bool c", "h_bucket,c", "")]
    [InlineData("(sum(rate(x_total[5m])) or vector(0)) + count_values(\"v\", y) # a comment naming z", "x_total,y", "")]
    [InlineData("label_values(m{namespace=\"$namespace\"}, service)", "m", "")]
    [InlineData("sum(rate({__name__=\"x\"}[${__range}]))", "x", "")]
    [InlineData("sum(rate(x[5m]) by (pod)", "x", "does not parse")]
    public void PromQl_FindsTheMetricNamesOfAQuery_AndWhereItDoesNotParse(string query, string names, string error)
    {
        var parsed = PromQl.Parse([PromQl.FromGrafana(query)]).Single();
        Assert.Equal(names.Split(','), parsed.Names);
        Assert.Equal(error.Length > 0, parsed.Errors.Count > 0);
    }

    /// <summary>GitHub's anchor for a heading: lower case, spaces to dashes, punctuation dropped.</summary>
    private static string Anchor(string heading) =>
        new string([.. heading.ToLowerInvariant().Where(static c => char.IsAsciiLetterOrDigit(c) || c is ' ' or '-' or '_')]).Replace(' ', '-');

    private static YamlMappingNode LoadYaml(string text)
    {
        var stream = new YamlStream();
        using (var reader = new StringReader(text))
        {
            stream.Load(reader);
        }

        return (YamlMappingNode)stream.Documents.Single().RootNode;
    }
}

using Relay.Bus.Dapr;
using YamlDotNet.RepresentationModel;

namespace Relay.Deploy.Tests;

/// <summary>
/// The Dapr components under infra/dapr/components name only what exists: the pub/sub component the bus uses
/// (<see cref="DaprBusOptions.DefaultPubSub"/>), the app ids the Deployments give their sidecars, the topics the Dapr
/// bus publishes and subscribes to (<see cref="DaprBusOptions"/>'s names), and the Secrets and keys the Deployments read.
/// </summary>
public sealed class DaprComponentsTests
{
    private static readonly DaprBusOptions Bus = new();

    private static string Folder => Repo.PathOf("infra", "dapr", "components");

    private static IReadOnlyList<(string File, YamlMappingNode Doc)> Components =>
        Directory.EnumerateFiles(Folder, "*.yaml", SearchOption.AllDirectories)
            .Order(StringComparer.Ordinal)
            .SelectMany(static f => Yaml.LoadAll(f).Select(d => (Repo.Relative(f), d)))
            .ToList();

    /// <summary>The Deployments' sidecar app ids, each with the host its container runs.</summary>
    private static Dictionary<string, string> AppIds() =>
        Manifests.Base.OfKind("Deployment")
            .Where(static d => d.Text("spec", "template", "metadata", "annotations", "dapr.io/enabled") == "true")
            .ToDictionary(
                static d => d.Text("spec", "template", "metadata", "annotations", "dapr.io/app-id")!,
                static d => d.Containers().Select(static c => Repo.Hosts.FirstOrDefault(h => ImageNames.Of(h) == c.Text("image"))).OfType<string>().Single());

    /// <summary>
    /// The topics each host's role publishes to and subscribes to on the Dapr bus (docs/dapr.md's table; DaprBus and
    /// DaprBusEndpoints): routing publishes sequenced messages; ingress publishes interest changes (when invoking
    /// fan-out failed) and subscribes to its node's topic; fan-out subscribes to both and publishes node topics.
    /// <c>null</c> stands for the node topics, one per ingress node id.
    /// </summary>
    private static (string?[] Publishes, string?[] Subscribes) Role(string host) => host switch
    {
        "Relay.Routing" => ([Bus.SequencedTopic], []),
        "Relay.Ingress" => ([Bus.InterestTopic], [null]),
        "Relay.FanOut" => ([null], [Bus.SequencedTopic, Bus.InterestTopic]),
        _ => ([], []),
    };

    /// <summary>The node ids ingress pods get, when the manifest fixes them; null when each pod gets its own (its name).</summary>
    private static IReadOnlySet<string>? FixedNodeIds()
    {
        var ingress = Manifests.Base.OfKind("Deployment").Single(static d => d.Containers().Any(static c => c.Text("image") == ImageNames.Of("Relay.Ingress")));
        var nodeId = ingress.Containers().SelectMany(static c => c.Items("env")).SingleOrDefault(static e => e.Text("name") == "Relay__Ingress__NodeId");
        return nodeId?.Text("value") is { } value ? new HashSet<string> { value } : null;
    }

    [Fact]
    public void Components_Parse_AsNamedDaprComponents()
    {
        Assert.NotEmpty(Components);
        foreach (var (file, doc) in Components)
        {
            Assert.StartsWith("dapr.io/", doc.Text("apiVersion"), StringComparison.Ordinal);
            Assert.Equal("Component", doc.Text("kind"));
            Assert.False(string.IsNullOrEmpty(doc.Name()), $"{file}: a component without a name");
            Assert.False(string.IsNullOrEmpty(doc.Text("spec", "type")), $"{file}: a component without spec.type");
        }
    }

    [Fact]
    public void PubSubComponents_AreTheOneTheBusUses_ScopedToAppIdsTheDeploymentsGive()
    {
        var problems = Problems(Components, AppIds(), FixedNodeIds());
        Assert.True(problems.Count == 0, string.Join("\n", problems));
        Assert.Contains(Components, static c => c.Doc.Text("spec", "type")!.StartsWith("pubsub.", StringComparison.Ordinal));

        // The bus's default app ids are the Deployments' of the hosts that answer them.
        var ids = AppIds();
        Assert.Equal("Relay.Routing", ids.GetValueOrDefault(DaprBusOptions.DefaultRoutingAppId));
        Assert.Equal("Relay.FanOut", ids.GetValueOrDefault(DaprBusOptions.DefaultFanOutAppId));
    }

    /// <summary>The checks catch drift: each change to a real component is reported.</summary>
    [Theory]
    [InlineData("pubsub-redis.yaml", "  name: relay-pubsub\n", "  name: relay-bus\n", "the Dapr bus publishes on relay-pubsub")]
    [InlineData("pubsub-redis.yaml", "relay-routing=relay-sequenced;", "relay-routing=relay-sequence;", "names topic relay-sequence")]
    [InlineData("pubsub-redis.yaml", "relay-routing=relay-sequenced;", "relay-routing=;", "relay-routing may not publish to relay-sequenced")]
    [InlineData("pubsub-redis.yaml", "relay-ingress=relay-interest;", "relay-ingress=relay-interest;relay-fanout=relay-node-relay-ingress-0;", "relay-fanout is restricted in publishingScopes, but it needs the node topics")]
    [InlineData("pubsub-redis.yaml", "\"relay-fanout=relay-sequenced,relay-interest;", "\"relay-fanout=relay-sequenced,relay-interest;relay-ingress=relay-node-relay-ingress-0;", "relay-ingress is restricted in subscriptionScopes, but it needs the node topics")]
    [InlineData("pubsub-redis.yaml", "scopes:\n  - relay-routing\n", "scopes:\n  - relay-router\n", "app id relay-router")]
    [InlineData("pubsub-redis.yaml", "        key: auth-token\n", "        key: password\n", "reads Secret relay-redis key password")]
    public void Checks_ReportAChangedComponent(string file, string from, string to, string expected)
    {
        var path = Path.Combine(Folder, file);
        var text = File.ReadAllText(path);
        Assert.Contains(from, text, StringComparison.Ordinal);
        var temp = Path.Combine(Path.GetTempPath(), $"relay-dapr-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(temp, text.Replace(from, to, StringComparison.Ordinal));
        try
        {
            var components = Components.Where(c => c.File != Repo.Relative(path)).Concat(Yaml.LoadAll(temp).Select(d => (Repo.Relative(path), d))).ToList();
            var problems = Problems(components, AppIds(), FixedNodeIds());
            Assert.Contains(problems, p => p.Contains(expected, StringComparison.Ordinal));
        }
        finally
        {
            File.Delete(temp);
        }
    }

    private static List<string> Problems(IReadOnlyList<(string File, YamlMappingNode Doc)> components, Dictionary<string, string> appIds, IReadOnlySet<string>? nodeIds)
    {
        var problems = new List<string>();

        // The Secrets and keys the Deployments read (made by docs/deploy.md's step 4 or an overlay).
        var secrets = Manifests.Base.OfKind("Deployment").SelectMany(static d => d.Descendants()).OfType<YamlMappingNode>()
            .Select(static m => m.Get("secretKeyRef")).OfType<YamlMappingNode>()
            .Select(static r => (r.Text("name"), r.Text("key")))
            .ToHashSet();

        foreach (var (file, doc) in components)
        {
            var name = doc.Name();
            foreach (var scope in doc.Items("scopes").Select(static s => ((YamlScalarNode)s).Value!))
            {
                if (!appIds.ContainsKey(scope))
                {
                    problems.Add($"{file}: {name} is scoped to app id {scope}, which no Deployment's sidecar has ({string.Join(", ", appIds.Keys)})");
                }
            }

            foreach (var item in doc.Items("spec", "metadata"))
            {
                if (item.Get("secretKeyRef") is { } reference && !secrets.Contains((reference.Text("name"), reference.Text("key"))))
                {
                    problems.Add($"{file}: {name}'s {item.Text("name")} reads Secret {reference.Text("name")} key {reference.Text("key")}, which no Deployment reads (they read {string.Join(", ", secrets.Select(static s => $"{s.Item1}/{s.Item2}"))})");
                }
            }

            if (!doc.Text("spec", "type")!.StartsWith("pubsub.", StringComparison.Ordinal))
            {
                continue;
            }

            if (name != Bus.PubSub)
            {
                problems.Add($"{file}: pub/sub component {name}, but the Dapr bus publishes on {Bus.PubSub} (Relay:Dapr:PubSub)");
            }

            foreach (var (setting, publishes) in new[] { ("publishingScopes", true), ("subscriptionScopes", false) })
            {
                var value = doc.Items("spec", "metadata").FirstOrDefault(m => m.Text("name") == setting)?.Text("value");
                if (value is null)
                {
                    continue;
                }

                foreach (var entry in value.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                {
                    var parts = entry.Split('=', 2);
                    var app = parts[0];
                    var topics = parts.Length > 1 ? parts[1].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet() : [];
                    if (!appIds.TryGetValue(app, out var host))
                    {
                        problems.Add($"{file}: {setting} names app id {app}, which no Deployment's sidecar has");
                        continue;
                    }

                    foreach (var topic in topics)
                    {
                        var known = topic == Bus.SequencedTopic || topic == Bus.InterestTopic || (nodeIds?.Any(n => Bus.NodeTopic(n) == topic) ?? false);
                        if (!known)
                        {
                            problems.Add($"{file}: {setting} names topic {topic}, which the Dapr bus does not use ({Bus.SequencedTopic}, {Bus.InterestTopic}, {Bus.NodeTopic("<Relay:Ingress:NodeId>")})");
                        }
                    }

                    var role = Role(host);
                    foreach (var needed in publishes ? role.Publishes : role.Subscribes)
                    {
                        if (needed is null)
                        {
                            // Node topics: listable only when the node ids are fixed in the manifest.
                            if (nodeIds is null)
                            {
                                problems.Add($"{file}: {app} is restricted in {setting}, but it needs the node topics ({Bus.NodeTopic("<pod name>")}), which the ingress Deployment names after each pod");
                            }
                            else
                            {
                                problems.AddRange(nodeIds.Where(n => !topics.Contains(Bus.NodeTopic(n))).Select(n => $"{file}: {app} may not {(publishes ? "publish to" : "subscribe to")} {Bus.NodeTopic(n)} ({setting})"));
                            }
                        }
                        else if (!topics.Contains(needed))
                        {
                            problems.Add($"{file}: {app} may not {(publishes ? "publish to" : "subscribe to")} {needed} ({setting}), which its role needs");
                        }
                    }
                }
            }
        }

        return problems;
    }
}

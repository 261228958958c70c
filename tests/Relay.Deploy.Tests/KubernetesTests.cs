using YamlDotNet.RepresentationModel;

namespace Relay.Deploy.Tests;

/// <summary>The manifests under infra/k8s parse and name only images, ports, paths and settings that exist in the code.</summary>
public sealed class KubernetesTests
{
    private static readonly string[] Overlays = ["dev", "prod"];

    /// <summary>The Relay Deployments of the base with the host each runs (found from its image).</summary>
    private static IEnumerable<(string Host, YamlMappingNode Deployment, YamlMappingNode Container)> RelayContainers() =>
        from deployment in Manifests.Base.OfKind("Deployment")
        from container in deployment.Containers()
        let host = Repo.Hosts.FirstOrDefault(h => ImageNames.Of(h) == container.Text("image"))
        where host is not null
        select (host, deployment, container);

    [Fact]
    public void EveryManifest_Parses_WithKindAndName()
    {
        var files = Manifests.Files;
        Assert.NotEmpty(files);
        foreach (var file in files)
        {
            foreach (var doc in Yaml.LoadAll(file))
            {
                Assert.False(string.IsNullOrEmpty(doc.Text("kind")), $"{Repo.Relative(file)}: a document without kind");
                if (doc.Text("kind") != "Kustomization")
                {
                    Assert.False(string.IsNullOrEmpty(doc.Name()), $"{Repo.Relative(file)}: a {doc.Text("kind")} without metadata.name");
                }
            }
        }
    }

    [Fact]
    public void Kustomizations_NameOnlyFilesThatExist_AndOverlaysBuildOnTheBase()
    {
        foreach (var file in Manifests.Files.Where(static f => Path.GetFileName(f) == "kustomization.yaml"))
        {
            var folder = Path.GetDirectoryName(file)!;
            var doc = Yaml.Load(file);
            var named = doc.Items("resources").Select(static r => ((YamlScalarNode)r).Value!)
                .Concat(doc.Items("patches").Select(static p => p.Text("path")).OfType<string>())
                .Concat(doc.Items("configMapGenerator").Concat(doc.Items("secretGenerator")).SelectMany(static g => g.Items("files")).Select(static f => ((YamlScalarNode)f).Value!.Split('=')[^1]));
            foreach (var path in named)
            {
                var full = Path.GetFullPath(Path.Combine(folder, path));
                Assert.True(File.Exists(full) || File.Exists(Path.Combine(full, "kustomization.yaml")), $"{Repo.Relative(file)} names {path}, which does not exist");
            }
        }

        foreach (var overlay in Overlays)
        {
            var doc = Yaml.Load(Path.Combine(Manifests.Folder, "overlays", overlay, "kustomization.yaml"));
            Assert.Contains("../../base", doc.Items("resources").Select(static r => ((YamlScalarNode)r).Value));
        }
    }

    [Fact]
    public void RelayDeployments_RunEveryServiceImage()
    {
        var images = RelayContainers().Select(static c => c.Container.Text("image")!).ToHashSet();
        Assert.Equal(Repo.ClusterServices.Select(ImageNames.Of).ToHashSet(), images);
    }

    [Fact]
    public void OverlayImages_AreImagesTheDockerfilesBuild()
    {
        var built = Repo.Hosts.Select(ImageNames.Of).ToHashSet();
        foreach (var overlay in Overlays)
        {
            var doc = Yaml.Load(Path.Combine(Manifests.Folder, "overlays", overlay, "kustomization.yaml"));
            foreach (var image in doc.Items("images"))
            {
                Assert.True(built.Contains(image.Text("name")!), $"overlay {overlay} sets image {image.Text("name")}, which no Dockerfile builds");
                Assert.EndsWith("/" + image.Text("name"), image.Text("newName"), StringComparison.Ordinal);
            }
        }
    }

    [Fact]
    public void Containers_ListenWhereTheImageListens_AndProbePathsTheHostMaps()
    {
        foreach (var (host, deployment, container) in RelayContainers())
        {
            var image = Dockerfile.Load(Repo.PathOf("services", host, "Dockerfile"));
            var listens = HostFacts.Listens(host, image.Final.Environment).Select(static l => l.Port).ToHashSet();
            var ports = container.Items("ports").ToDictionary(static p => p.Text("name") ?? p.Text("containerPort")!, static p => int.Parse(p.Text("containerPort")!, System.Globalization.CultureInfo.InvariantCulture));
            Assert.NotEmpty(ports);
            Assert.All(ports, p => Assert.True(listens.Contains(p.Value), $"{deployment.Name()}: containerPort {p.Value}, but {host} listens on {string.Join(", ", listens)}"));

            var mapped = HostFacts.ProbePaths(host);
            foreach (var probe in new[] { "readinessProbe", "livenessProbe", "startupProbe" })
            {
                var get = container.Get(probe, "httpGet");
                if (get is null)
                {
                    Assert.NotEqual("readinessProbe", probe);
                    continue;
                }

                Assert.True(mapped.Contains(get.Text("path")!), $"{deployment.Name()}: {probe} asks {get.Text("path")}, which {host} does not map");
                var port = get.Text("port")!;
                Assert.True(ports.ContainsKey(port) || ports.ContainsValue(int.TryParse(port, out var n) ? n : -1), $"{deployment.Name()}: {probe} asks port {port}, not one of the container's");
            }

            Assert.Equal("/readyz", container.Text("readinessProbe", "httpGet", "path"));

            var annotations = deployment.Get("spec", "template", "metadata", "annotations");
            Assert.Equal("true", annotations.Text("dapr.io/enabled"));
            Assert.Equal(deployment.Name(), annotations.Text("dapr.io/app-id"));
            Assert.True(listens.Contains(int.Parse(annotations.Text("dapr.io/app-port")!, System.Globalization.CultureInfo.InvariantCulture)), $"{deployment.Name()}: dapr.io/app-port is not where {host} listens");
        }
    }

    [Fact]
    public void RelayEnvironmentVariables_NameRealSettings()
    {
        var names = Manifests.Files.SelectMany(static f => Yaml.LoadAll(f).SelectMany(static d => d.Descendants())
                .OfType<YamlMappingNode>()
                .Select(static m => m.Text("name"))
                .OfType<string>()
                .Where(static n => n.StartsWith("Relay__", StringComparison.Ordinal))
                .Select(n => (File: Repo.Relative(f), Name: n)))
            .ToList();
        Assert.True(names.Count > 20, "fewer Relay__ variables than the manifests set: is the walk broken?");
        var problems = names.Select(static n => (n.File, Problem: RelaySettings.Problem(n.Name))).Where(static p => p.Problem is not null).Select(static p => $"{p.File}: {p.Problem}").Distinct().ToList();
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public void OtlpEndpoints_AreTheCollectorsPort_ForTheProtocolRelaySends()
    {
        // RelayTelemetry is internal to Relay.ServiceDefaults: its constants are read by reflection.
        var telemetry = typeof(Relay.ServiceDefaults.ServiceDefaultsExtensions).Assembly.GetType("Relay.ServiceDefaults.Telemetry.RelayTelemetry", throwOnError: true)!;
        string Constant(string name) => (string)telemetry.GetField(name)!.GetRawConstantValue()!;
        var collector = Manifests.Base.OfKind("Service").Single(static s => s.Name() == "otel-collector");
        var ports = collector.Items("spec", "ports").ToDictionary(static p => p.Text("name")!, static p => p.Text("port")!);
        foreach (var (host, deployment, container) in RelayContainers())
        {
            var env = container.Items("env").ToDictionary(static e => e.Text("name")!, static e => e.Text("value"));
            var endpoint = new Uri(env[Constant("OtlpEndpointKey")]!);
            var protocol = env.GetValueOrDefault(Constant("OtlpProtocolKey")) ?? Constant("DefaultOtlpProtocol");
            var expected = ports[protocol == "grpc" ? "otlp-grpc" : "otlp-http"];
            Assert.Equal("otel-collector", endpoint.Host);
            Assert.True(expected == endpoint.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), $"{deployment.Name()} ({host}) sends OTLP {protocol} to port {endpoint.Port}; the collector takes it on {expected}");
        }
    }

    [Fact]
    public void RelayEnvironmentVariables_OfTheWorkflowAndTye_NameRealSettings()
    {
        // The workflow's integration job sets the services' settings in ServicesUnderDaprTests, which it runs.
        var names = new[] { Repo.PathOf(".github", "workflows", "ci.yml"), Repo.PathOf("tye.yaml"), Repo.PathOf("tests", "Relay.Deploy.Tests", "ServicesUnderDaprTests.cs") }
            .SelectMany(static f => System.Text.RegularExpressions.Regex.Matches(File.ReadAllText(f), @"\bRelay__[A-Za-z0-9_]+").Select(m => (File: Repo.Relative(f), Name: m.Value)))
            .ToList();
        Assert.Contains(names, static n => n.File == "tye.yaml");
        Assert.Contains(names, static n => n.File.EndsWith("ServicesUnderDaprTests.cs", StringComparison.Ordinal));
        var problems = names.Select(static n => (n.File, Problem: RelaySettings.Problem(n.Name))).Where(static p => p.Problem is not null).Select(static p => $"{p.File}: {p.Problem}").Distinct().ToList();
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Theory]
    [InlineData("Relay__Ingress__HeartbeatMs", true)]
    [InlineData("Relay__Bus", true)]
    [InlineData("Relay__Redis__Password", true)]
    [InlineData("Relay__Auth__Apps__0__Keys__1__Capabilities__0__Operations__2", true)]
    [InlineData("Relay__Auth__DefaultTokenTtlSeconds", true)]
    [InlineData("Relay__Namespaces__Rules__chat__HistorySize", true)]
    [InlineData("Relay__Ingress__HeartBeatSeconds", false)]
    [InlineData("Relay__Redis__Passwd", false)]
    [InlineData("Relay__Auth__Apps__first__Id", false)]
    [InlineData("Relay__Auth__Apps__0__Keys", false)]
    [InlineData("Relay__Gateway__Port", false)]
    [InlineData("Relay__Ingress__MaxMessageBytes__Extra", false)]
    public void SettingsBinder_TellsRealSettingsFromTypos(string variable, bool real)
    {
        Assert.Equal(real, RelaySettings.Problem(variable) is null);
    }

    [Fact]
    public void Routing_IsGuaranteedQoS_WithServerGc_APdb_AndADrain()
    {
        var routing = RelayContainers().Single(static c => c.Host == "Relay.Routing");
        var resources = routing.Container.Get("resources");
        Assert.NotNull(resources.Get("limits", "cpu"));
        Assert.Equal(resources.Text("requests", "cpu"), resources.Text("limits", "cpu"));
        Assert.Equal(resources.Text("requests", "memory"), resources.Text("limits", "memory"));
        var env = routing.Container.Items("env").ToDictionary(static e => e.Text("name")!, static e => e.Text("value"));
        Assert.Equal("1", env["DOTNET_gcServer"]);
        Assert.NotNull(routing.Container.Get("lifecycle", "preStop"));
        Assert.NotNull(routing.Deployment.Text("spec", "template", "spec", "terminationGracePeriodSeconds"));

        var labels = routing.Deployment.Entries("spec", "template", "metadata", "labels").ToDictionary(static l => l.Key, static l => ((YamlScalarNode)l.Value).Value);
        Assert.Contains(Manifests.Base.OfKind("PodDisruptionBudget"), p => p.Entries("spec", "selector", "matchLabels").All(l => labels.GetValueOrDefault(l.Key) == ((YamlScalarNode)l.Value).Value));

        // The overlays keep requests = limits.
        foreach (var overlay in Overlays)
        {
            foreach (var patch in Manifests.Documents(Path.Combine(Manifests.Folder, "overlays", overlay)).OfKind("Deployment").Where(static d => d.Name() == "relay-routing"))
            {
                foreach (var container in patch.Containers().Where(static c => c.Get("resources") is not null))
                {
                    Assert.Equal(container.Text("resources", "requests", "cpu"), container.Text("resources", "limits", "cpu"));
                    Assert.Equal(container.Text("resources", "requests", "memory"), container.Text("resources", "limits", "memory"));
                }
            }
        }
    }

    [Fact]
    public void IngressAndFanOut_HaveHpas_OnDeploymentsThatExist()
    {
        var deployments = Manifests.Base.OfKind("Deployment").Select(static d => d.Name()).ToHashSet();
        var targets = Manifests.Base.OfKind("HorizontalPodAutoscaler").Select(static h => h.Text("spec", "scaleTargetRef", "name")!).ToList();
        Assert.All(targets, t => Assert.Contains(t, deployments));
        Assert.Superset(new HashSet<string> { "relay-ingress", "relay-fanout" }, targets.ToHashSet());
    }

    [Fact]
    public void Services_SelectPodsThatExist_OnPortsTheyHave()
    {
        var deployments = Manifests.Base.OfKind("Deployment").ToList();
        foreach (var service in Manifests.Base.OfKind("Service"))
        {
            var selector = service.Entries("spec", "selector").ToDictionary(static l => l.Key, static l => ((YamlScalarNode)l.Value).Value);
            var match = deployments.Where(d => selector.All(s => d.Text("spec", "template", "metadata", "labels", s.Key) == s.Value)).ToList();
            Assert.True(match.Count == 1, $"Service {service.Name()} selects {match.Count} Deployments");
            var ports = match[0].Containers().SelectMany(static c => c.Items("ports")).SelectMany(static p => new[] { p.Text("name"), p.Text("containerPort") }).OfType<string>().ToHashSet();
            Assert.All(service.Items("spec", "ports"), p => Assert.True(ports.Contains(p.Text("targetPort") ?? p.Text("port")!), $"Service {service.Name()}: targetPort {p.Text("targetPort")} is not a port of {match[0].Name()}"));
        }
    }

    [Fact]
    public void PublicNlb_EndsTls_WithLongIdleTimeouts_AndChecksReadiness()
    {
        var nlb = Manifests.Base.OfKind("Service").Single(static s => s.Text("spec", "type") == "LoadBalancer");
        var annotations = nlb.Entries("metadata", "annotations").ToDictionary(static a => a.Key, static a => ((YamlScalarNode)a.Value).Value!);
        Assert.Equal("external", annotations["service.beta.kubernetes.io/aws-load-balancer-type"]);
        // TLS on every listener: 443 (HTTPS, WSS) and 8883 (MQTT over TLS), each with an idle timeout far above the
        // heartbeat; every Service port is one of them.
        var sslPorts = annotations["service.beta.kubernetes.io/aws-load-balancer-ssl-ports"].Split(',', StringSplitOptions.TrimEntries);
        Assert.Equal(["443", "8883"], sslPorts);
        Assert.Equal(sslPorts.Order(), nlb.Items("spec", "ports").Select(static p => p.Text("port")!).Order());
        var heartbeat = new Relay.Ingress.IngressOptions().HeartbeatMs / 1000;
        foreach (var port in sslPorts)
        {
            var idle = annotations[$"service.beta.kubernetes.io/aws-load-balancer-listener-attributes.TLS-{port}"];
            var seconds = int.Parse(idle.Split('=')[1], System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(seconds >= 10 * heartbeat, $"the NLB's idle timeout on {port} ({seconds} s) should be far above the heartbeat ({heartbeat} s)");
        }

        // MQTT over TLS reaches the pods' MQTT port; readiness is asked on the HTTP port for both target groups (an MQTT
        // port answers no HTTP).
        Assert.Equal("mqtt", nlb.Items("spec", "ports").Single(static p => p.Text("port") == "8883").Text("targetPort"));
        Assert.Equal(HostFacts.ContainerPort.ToString(System.Globalization.CultureInfo.InvariantCulture), annotations["service.beta.kubernetes.io/aws-load-balancer-healthcheck-port"]);
        Assert.Contains(annotations["service.beta.kubernetes.io/aws-load-balancer-healthcheck-path"], HostFacts.ProbePaths("Relay.Ingress"));

        var prod = Manifests.Documents(Path.Combine(Manifests.Folder, "overlays", "prod")).OfKind("Service").Single(s => s.Name() == nlb.Name());
        Assert.StartsWith("arn:aws:acm:", prod.Text("metadata", "annotations", "service.beta.kubernetes.io/aws-load-balancer-ssl-cert"), StringComparison.Ordinal);
    }

    [Fact]
    public void OverlayPatches_TargetResourcesAndContainersOfTheBase()
    {
        var resources = Manifests.Base.Select(static d => (d.Doc.Text("kind"), d.Doc.Name())).ToHashSet();
        var containers = Manifests.Base.OfKind("Deployment").ToDictionary(static d => d.Name(), static d => d.Containers().Select(static c => c.Text("name")).ToHashSet());
        foreach (var overlay in Overlays)
        {
            foreach (var (file, doc) in Manifests.Documents(Path.Combine(Manifests.Folder, "overlays", overlay)))
            {
                Assert.True(resources.Contains((doc.Text("kind"), doc.Name())), $"{file}: patches {doc.Text("kind")} {doc.Name()}, which the base does not have");
                foreach (var container in doc.Containers())
                {
                    Assert.True(containers[doc.Name()].Contains(container.Text("name")), $"{file}: patches container {container.Text("name")} of {doc.Name()}, which has no such container");
                }
            }
        }
    }

    [Fact]
    public void ConfigMapAndSecretKeys_TheDeploymentsRead_AreGeneratedByEveryOverlay_OrOptional()
    {
        var references = Manifests.Base.OfKind("Deployment").SelectMany(static d => d.Descendants()).OfType<YamlMappingNode>()
            .SelectMany(static m => new[] { m.Get("configMapKeyRef"), m.Get("secretKeyRef") }.OfType<YamlMappingNode>())
            .Where(static r => r.Text("optional") != "true")
            .Select(static r => (Name: r.Text("name")!, Key: r.Text("key")!))
            .ToHashSet();
        Assert.NotEmpty(references);
        foreach (var overlay in Overlays)
        {
            var doc = Yaml.Load(Path.Combine(Manifests.Folder, "overlays", overlay, "kustomization.yaml"));
            var generated = doc.Items("configMapGenerator").Concat(doc.Items("secretGenerator"))
                .SelectMany(static g => g.Items("literals").Concat(g.Items("files")).Select(l => (Name: g.Text("name")!, Key: ((YamlScalarNode)l).Value!.Split('=')[0])))
                .ToHashSet();
            var external = overlay == "prod" ? ["relay-app-keys", "relay-redis", "relay-signing-key"] : Array.Empty<string>(); // from Secrets Manager (docs/deploy.md)
            Assert.All(references.Where(r => !external.Contains(r.Name)), r => Assert.True(generated.Contains(r), $"overlay {overlay} does not generate {r.Name}/{r.Key}"));
        }
    }

    [Fact]
    public void Ingress_DrainsItsClients_WithinTheGracePeriodAndTheHostsShutdownTimeout()
    {
        // A stopping ingress pod: preStop (the NLB stops sending new connections), then the node tells every client
        // disconnect 50300 with reconnect: true and waits up to Relay:Ingress:DrainTimeout for them to go (off by
        // default), then closes the rest within CloseTimeout; all of it before Kubernetes' SIGKILL and the drain under
        // the host's shutdown timeout (HostOptions, 30 s by default), which the node's stop runs within.
        var ingress = RelayContainers().Single(static c => c.Host == "Relay.Ingress");
        var env = ingress.Container.Items("env").ToDictionary(static e => e.Text("name")!, static e => e.Text("value"));
        Assert.True(env.TryGetValue("Relay__Ingress__DrainTimeout", out var drainText) && drainText is not null, "the ingress Deployment sets no Relay__Ingress__DrainTimeout: a stopping pod would cut its clients without a disconnect");
        var drain = TimeSpan.Parse(drainText!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(drain > TimeSpan.Zero, "Relay__Ingress__DrainTimeout 0 turns the drain off");
        var close = env.TryGetValue("Relay__Ingress__CloseTimeout", out var closeText) ? TimeSpan.Parse(closeText!, System.Globalization.CultureInfo.InvariantCulture) : new Relay.Ingress.IngressOptions().CloseTimeout;
        var preStop = int.Parse(ingress.Container.Text("lifecycle", "preStop", "sleep", "seconds")!, System.Globalization.CultureInfo.InvariantCulture);
        var grace = int.Parse(ingress.Deployment.Text("spec", "template", "spec", "terminationGracePeriodSeconds")!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(preStop + drain.TotalSeconds + close.TotalSeconds <= grace, $"preStop {preStop} s + drain {drain.TotalSeconds} s + close {close.TotalSeconds} s exceed terminationGracePeriodSeconds {grace}");
        Assert.True(drain < new Microsoft.Extensions.Hosting.HostOptions().ShutdownTimeout, $"the drain ({drain.TotalSeconds} s) must end within the host's shutdown timeout");

        // The load balancer gives a deregistered pod time for the connections it still has.
        var nlb = Manifests.Base.OfKind("Service").Single(static s => s.Text("spec", "type") == "LoadBalancer");
        Assert.Contains("deregistration_delay.timeout_seconds=", nlb.Text("metadata", "annotations", "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes"), StringComparison.Ordinal);
    }

    [Fact]
    public void Collector_ReceivesWhatServicesAndSidecarsSend_AndExportsTracesToTheBackend()
    {
        var configMap = Manifests.Base.OfKind("ConfigMap").Single(static c => c.Name() == "otel-collector");
        var stream = new YamlStream();
        stream.Load(new StringReader(configMap.Text("data", "collector.yaml")!));
        var config = (YamlMappingNode)stream.Documents.Single().RootNode;
        var problems = CollectorProblems(config, Manifests.Base);
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Theory]
    [InlineData("exporters: [otlp/tempo]", "exporters: [debug]", "exports traces to no backend")]
    [InlineData("receivers: [otlp, zipkin]", "receivers: [otlp]", "the sidecars' relay-tracing sends to")]
    [InlineData("endpoint: 0.0.0.0:4318", "endpoint: 0.0.0.0:4319", "receiver otlp listens on 4319")]
    [InlineData("exporters: [otlp/tempo]", "exporters: [otlp/jaeger]", "names exporter otlp/jaeger, which is not defined")]
    public void CollectorChecks_ReportAChangedConfig(string from, string to, string expected)
    {
        var text = Manifests.Base.OfKind("ConfigMap").Single(static c => c.Name() == "otel-collector").Text("data", "collector.yaml")!;
        Assert.Contains(from, text, StringComparison.Ordinal);
        var stream = new YamlStream();
        stream.Load(new StringReader(text.Replace(from, to, StringComparison.Ordinal)));
        var problems = CollectorProblems((YamlMappingNode)stream.Documents.Single().RootNode, Manifests.Base);
        Assert.Contains(problems, p => p.Contains(expected, StringComparison.Ordinal));
    }

    /// <summary>
    /// What the collector's configuration must do in this deployment: every component a pipeline names is defined; the
    /// traces pipeline exports to an OTLP backend (Tempo, or Jaeger's OTLP port) whose ${env:…} settings the collector
    /// container sets; the receivers listen on the ports the Service exposes (OTLP for the services, Zipkin for the
    /// sidecars' Configuration named by every Deployment's dapr.io/config), and take them into the traces pipeline.
    /// </summary>
    private static List<string> CollectorProblems(YamlMappingNode config, IReadOnlyList<(string File, YamlMappingNode Doc)> resources)
    {
        var problems = new List<string>();
        var pipeline = config.Get("service", "pipelines", "traces");
        if (pipeline is null)
        {
            return ["the collector has no traces pipeline"];
        }

        foreach (var kind in new[] { "receivers", "processors", "exporters" })
        {
            foreach (var named in pipeline.Items(kind).Select(static n => ((YamlScalarNode)n).Value!))
            {
                if (config.Get(kind, named) is null && config.Entries(kind).All(e => e.Key != named))
                {
                    problems.Add($"the traces pipeline names {kind[..^1]} {named}, which is not defined");
                }
            }
        }

        var exporters = pipeline.Items("exporters").Select(static n => ((YamlScalarNode)n).Value!).ToList();
        if (!exporters.Any(static e => e == "otlp" || e.StartsWith("otlp/", StringComparison.Ordinal)))
        {
            problems.Add($"the traces pipeline exports traces to no backend (only {string.Join(", ", exporters)})");
        }

        var collector = resources.OfKind("Deployment").Single(static d => d.Name() == "otel-collector").Containers().Single();
        var env = collector.Items("env").Select(static e => e.Text("name")).ToHashSet();
        foreach (var exporter in exporters.Where(e => config.Get("exporters", e) is not null))
        {
            foreach (var variable in config.Get("exporters", exporter)!.Descendants().OfType<YamlScalarNode>().SelectMany(static s => System.Text.RegularExpressions.Regex.Matches(s.Value ?? "", @"\$\{env:([A-Z0-9_]+)\}")).Select(static m => m.Groups[1].Value))
            {
                if (!env.Contains(variable))
                {
                    problems.Add($"exporter {exporter} reads ${{env:{variable}}}, which the collector container does not set");
                }
            }
        }

        var service = resources.OfKind("Service").Single(static s => s.Name() == "otel-collector");
        var servicePorts = service.Items("spec", "ports").Select(static p => p.Text("port")!).ToHashSet();
        var receivers = pipeline.Items("receivers").Select(static n => ((YamlScalarNode)n).Value!).ToHashSet();
        foreach (var (receiver, body) in config.Entries("receivers"))
        {
            foreach (var endpoint in body.Descendants().OfType<YamlMappingNode>().Select(static m => m.Text("endpoint")).OfType<string>())
            {
                var port = endpoint[(endpoint.LastIndexOf(':') + 1)..];
                if (!servicePorts.Contains(port))
                {
                    problems.Add($"receiver {receiver} listens on {port}, which the otel-collector Service does not expose ({string.Join(", ", servicePorts)})");
                }
            }
        }

        // The services' OTLP (OtlpEndpoints_AreTheCollectorsPort_ForTheProtocolRelaySends checks the port) comes in on otlp.
        if (!receivers.Contains("otlp"))
        {
            problems.Add("the traces pipeline does not take the services' OTLP (receiver otlp)");
        }

        // The sidecars' spans: each Deployment's dapr.io/config is a Configuration that sends to this collector on a
        // port whose receiver is in the pipeline.
        var configurations = resources.OfKind("Configuration").ToDictionary(static c => c.Name());
        foreach (var deployment in resources.OfKind("Deployment").Where(static d => d.Text("spec", "template", "metadata", "annotations", "dapr.io/enabled") == "true"))
        {
            var name = deployment.Text("spec", "template", "metadata", "annotations", "dapr.io/config");
            if (name is null || !configurations.TryGetValue(name, out var tracing))
            {
                problems.Add($"{deployment.Name()}: dapr.io/config {name} is not a Configuration of the base");
                continue;
            }

            var address = new Uri(tracing.Text("spec", "tracing", "zipkin", "endpointAddress")!);
            var port = address.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
            var receiver = config.Entries("receivers").Where(r => r.Value.Descendants().OfType<YamlMappingNode>().Any(m => m.Text("endpoint")?.EndsWith(":" + port, StringComparison.Ordinal) == true)).Select(static r => r.Key).FirstOrDefault();
            if (!address.Host.StartsWith("otel-collector.", StringComparison.Ordinal) || receiver is null || !receivers.Contains(receiver))
            {
                problems.Add($"{deployment.Name()}: the sidecars' {name} sends to {address}, which the collector's traces pipeline does not receive");
            }
        }

        return problems.Distinct().ToList();
    }
}

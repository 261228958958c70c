using System.Text.RegularExpressions;
using YamlDotNet.RepresentationModel;

namespace Relay.Deploy.Tests;

/// <summary>The GitHub Actions workflow parses, runs the README's test command on every push and builds only images that exist.</summary>
public sealed partial class WorkflowTests
{
    private static readonly string WorkflowPath = Repo.PathOf(".github", "workflows", "ci.yml");

    private static YamlMappingNode Workflow => Yaml.Load(WorkflowPath);

    private static IEnumerable<string> Runs(YamlNode job) => job.Items("steps").Select(static s => s.Text("run")).OfType<string>();

    [GeneratedRegex(@"services/[A-Za-z.]+/Dockerfile")]
    private static partial Regex DockerfilePath();

    [GeneratedRegex(@"dotnet publish (\S+\.csproj)|services/Relay\.\$s/Relay\.\$s\.csproj")]
    private static partial Regex PublishedProject();

    [Fact]
    public void Workflow_Parses_WithItsFourJobs()
    {
        var jobs = Workflow.Entries("jobs").Select(static j => j.Key).ToHashSet();
        Assert.Superset(jobs, new HashSet<string> { "test", "images", "integration", "terraform" });
        Assert.All(Workflow.Entries("jobs"), j => Assert.True(j.Value.Get("runs-on") is not null, $"job {j.Key} has no runs-on"));
    }

    [Fact]
    public void TestJob_RunsExactlyTheReadmeTestCommand_OnEveryPush()
    {
        var test = Workflow.Get("jobs", "test");
        Assert.NotNull(test);
        var command = Readme.TestCommand;
        Assert.Single(Runs(test), r => r.Trim() == command);
        Assert.Null(test.Get("if"));

        // Every push, on every branch; and pull requests.
        var push = Workflow.Get("on", "push");
        Assert.Contains("**", push.Items("branches").Select(static b => ((YamlScalarNode)b).Value));
        Assert.NotNull(Workflow.Get("on", "pull_request"));
    }

    [Fact]
    public void TestJob_InstallsWhatCiRunInstalls()
    {
        // .ci/run is the reference list of Debian packages the tests need; the workflow installs the same.
        var ciRun = File.ReadAllText(Repo.PathOf(".ci", "run"));
        var packages = Regex.Match(ciRun, @"apt_packages=\(([^)]*)\)").Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.NotEmpty(packages);
        var installs = string.Join('\n', Runs(Workflow.Get("jobs", "test")!));
        Assert.All(packages, p => Assert.Matches($@"apt-get install[^\n]*\s{Regex.Escape(p)}(\s|$)", installs));
    }

    [Fact]
    public void ImagesJob_BuildsEveryHostsDockerfile_OnTagsOnly()
    {
        var images = Workflow.Get("jobs", "images");
        Assert.NotNull(images);
        Assert.Contains("refs/tags/", images.Text("if"), StringComparison.Ordinal);
        Assert.Contains("v*", Workflow.Get("on", "push").Items("tags").Select(static t => ((YamlScalarNode)t).Value));

        var named = Workflow.Descendants().OfType<YamlScalarNode>().SelectMany(static s => DockerfilePath().Matches(s.Value ?? "").Select(static m => m.Value)).ToHashSet();
        Assert.All(named, d => Assert.True(File.Exists(Repo.PathOf(d.Split('/'))), $"the workflow builds {d}, which does not exist"));

        var matrix = images.Items("strategy", "matrix", "include").ToList();
        Assert.Equal(Repo.Hosts.Select(static h => $"services/{h}/Dockerfile").Order(StringComparer.Ordinal), matrix.Select(static m => m.Text("dockerfile")!).Order(StringComparer.Ordinal));
        Assert.All(matrix, m => Assert.Equal(ImageNames.Of(m.Text("dockerfile")!.Split('/')[1]), m.Text("image")));
    }

    [Fact]
    public void IntegrationJob_PublishesServicesThatExist_AndRunsThemUnderDaprWithTestcontainers()
    {
        var integration = Workflow.Get("jobs", "integration");
        Assert.NotNull(integration);
        var script = string.Join('\n', Runs(integration));
        Assert.Contains("dapr init --slim", script, StringComparison.Ordinal);
        var loop = Regex.Match(script, @"for s in ([A-Za-z ]+); do\s+dotnet publish services/Relay\.\$s/Relay\.\$s\.csproj [^\n]*-o (\S+)/\$s\b");
        Assert.True(loop.Success, "the integration job does not publish the services in a 'for s in …' loop to a folder per service");
        var services = loop.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.All(services, s => Assert.True(File.Exists(Repo.PathOf("services", "Relay." + s, $"Relay.{s}.csproj")), $"the integration job publishes Relay.{s}, which does not exist"));
        Assert.Equal(Repo.ClusterServices.Select(static h => h["Relay.".Length..]).Order(StringComparer.Ordinal), services.Order(StringComparer.Ordinal));

        // The test that runs them publishes nothing itself: it starts what the loop published, where the loop put it.
        Assert.Equal(ServicesUnderDaprTests.PublishFolder, loop.Groups[2].Value);
        Assert.Equal(services.Order(StringComparer.Ordinal), ServicesUnderDaprTests.Services.Select(static s => s.Folder).Order(StringComparer.Ordinal));

        // Redis and Kafka come from Testcontainers in that test, not from the job's service containers.
        Assert.Null(integration.Get("services"));
        var step = integration.Items("steps").SingleOrDefault(static s => s.Text("run")?.Contains("dotnet test tests/Relay.Deploy.Tests", StringComparison.Ordinal) == true);
        Assert.NotNull(step);
        Assert.Equal("1", step.Text("env", DaprIntegrationFactAttribute.Variable));
        var filter = Regex.Match(step.Text("run")!, @"--filter ""FullyQualifiedName~([\w.]+)""");
        Assert.True(filter.Success, "the integration job's dotnet test has no FullyQualifiedName filter");
        var tests = typeof(ServicesUnderDaprTests).Assembly.GetTypes()
            .SelectMany(static t => t.GetMethods().Where(static m => m.GetCustomAttributes(typeof(DaprIntegrationFactAttribute), false).Length > 0).Select(m => $"{t.FullName}.{m.Name}"))
            .ToList();
        Assert.NotEmpty(tests);
        Assert.All(tests, t => Assert.StartsWith(filter.Groups[1].Value, t, StringComparison.Ordinal));
        Assert.Contains(integration.Items("steps"), static s => s.Text("run")?.Contains(ServicesUnderDaprTests.LogFolder + "/*.log", StringComparison.Ordinal) == true && s.Text("if") == "always()");
    }

    [Fact]
    public void IntegrationTest_RunsEachServiceUnderItsDeploymentsAppId_WithTheRealPubSubComponent()
    {
        var appIds = Manifests.Base.OfKind("Deployment")
            .Select(static d => (Id: d.Text("spec", "template", "metadata", "annotations", "dapr.io/app-id"), Host: d.Containers().Select(static c => c.Text("image")).First()))
            .ToDictionary(static d => d.Host!, static d => d.Id);
        Assert.All(ServicesUnderDaprTests.Services, s => Assert.Equal(appIds[ImageNames.Of("Relay." + s.Folder)], s.AppId));

        // The component it runs with is infra/dapr/components/pubsub-redis.yaml on the test's Redis, without the AUTH token.
        var component = new YamlDotNet.RepresentationModel.YamlStream();
        component.Load(new StringReader(ServicesUnderDaprTests.PubSubComponent("127.0.0.1:32768")));
        var doc = (YamlMappingNode)component.Documents.Single().RootNode;
        Assert.Equal(new Relay.Bus.Dapr.DaprBusOptions().PubSub, doc.Text("metadata", "name"));
        var metadata = doc.Items("spec", "metadata").ToDictionary(static m => m.Text("name")!);
        Assert.Equal("127.0.0.1:32768", metadata["redisHost"].Text("value"));
        Assert.False(metadata.ContainsKey("redisPassword"));
        Assert.Contains("publishingScopes", metadata.Keys);

        var arguments = ServicesUnderDaprTests.DaprRunArguments("relay-ingress", 8080, 3600, "artifacts/services/Ingress/Relay.Ingress.dll", "/tmp/components");
        Assert.Equal(["run", "--app-id", "relay-ingress", "--app-port", "8080"], arguments.Take(5));
        Assert.Equal(["--", "dotnet", "artifacts/services/Ingress/Relay.Ingress.dll"], arguments.TakeLast(3));
        Assert.Equal("127.0.0.1:32768", ServicesUnderDaprTests.HostAndPort("plaintext://127.0.0.1:32768/"));
        Assert.Equal("127.0.0.1:32768", ServicesUnderDaprTests.HostAndPort("127.0.0.1:32768"));
    }
}

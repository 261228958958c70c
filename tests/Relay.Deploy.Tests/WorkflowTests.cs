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
    public void IntegrationJob_PublishesServicesThatExist_AndRunsThemUnderDapr()
    {
        var integration = Workflow.Get("jobs", "integration");
        Assert.NotNull(integration);
        var script = string.Join('\n', Runs(integration));
        Assert.Contains("dapr init --slim", script, StringComparison.Ordinal);
        var loop = Regex.Match(script, @"for s in ([A-Za-z ]+); do\s+dotnet publish services/Relay\.\$s/Relay\.\$s\.csproj");
        Assert.True(loop.Success, "the integration job does not publish the services in a 'for s in …' loop");
        var services = loop.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.All(services, s => Assert.True(File.Exists(Repo.PathOf("services", "Relay." + s, $"Relay.{s}.csproj")), $"the integration job publishes Relay.{s}, which does not exist"));
        Assert.Equal(Repo.ClusterServices.Select(static h => h["Relay.".Length..]).Order(StringComparer.Ordinal), services.Order(StringComparer.Ordinal));
        Assert.NotNull(integration.Get("services", "redis"));
        Assert.NotNull(integration.Get("services", "kafka"));
    }
}

using YamlDotNet.RepresentationModel;

namespace Relay.Deploy.Tests;

/// <summary>tye.yaml names only projects that exist and are runnable hosts, on ports that do not collide.</summary>
public sealed class TyeTests
{
    [Fact]
    public void Tye_RunsOnlyExistingHosts_OnDistinctPorts()
    {
        var tye = Yaml.Load(Repo.PathOf("tye.yaml"));
        var services = tye.Items("services").ToList();
        var projects = services.Select(static s => s.Text("project")).OfType<string>().ToList();
        Assert.NotEmpty(projects);
        foreach (var project in projects)
        {
            Assert.True(File.Exists(Repo.PathOf(project.Split('/'))), $"tye.yaml runs {project}, which does not exist");
            var host = project.Split('/')[^2];
            Assert.True(Repo.Hosts.Contains(host), $"tye.yaml runs {project}, which is not a runnable host (no Program.cs)");
        }

        var ports = services.SelectMany(static s => s.Items("bindings")).Select(static b => b.Text("port")).OfType<string>().ToList();
        Assert.Equal(ports.Count, ports.Distinct().Count());
        Assert.All(services, s => Assert.False(string.IsNullOrEmpty(s.Text("name"))));
        Assert.Equal(services.Count, services.Select(static s => s.Text("name")).Distinct().Count());
    }
}

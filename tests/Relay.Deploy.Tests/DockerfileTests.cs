namespace Relay.Deploy.Tests;

/// <summary>Every host's image builds its own project and exposes and probes what the host really listens on and maps.</summary>
public sealed class DockerfileTests
{
    public static TheoryData<string> Hosts() => [.. Repo.Hosts];

    [Fact]
    public void Hosts_AreTheSixRunnableServices()
    {
        // Not vacuous: the theory below runs over these.
        Assert.Equal(["Relay.Auth", "Relay.FanOut", "Relay.Functions", "Relay.Ingress", "Relay.Routing", "Relay.Standalone"], Repo.Hosts);
    }

    [Theory]
    [MemberData(nameof(Hosts))]
    public void Dockerfile_OfEachHost_AgreesWithTheCode(string host)
    {
        var path = Repo.PathOf("services", host, "Dockerfile");
        Assert.True(File.Exists(path), $"services/{host} is a runnable host without a Dockerfile");
        var problems = DockerChecks.Problems(host, Dockerfile.Load(path));
        Assert.True(problems.Count == 0, $"services/{host}/Dockerfile: " + string.Join("; ", problems));
    }

    [Fact]
    public void Dockerfiles_OnlyForRunnableHosts()
    {
        var files = Directory.EnumerateFiles(Repo.Root, "Dockerfile", SearchOption.AllDirectories)
            .Select(Repo.Relative)
            .Where(static f => !f.Contains("/node_modules/", StringComparison.Ordinal) && !f.Contains("/bin/", StringComparison.Ordinal) && !f.Contains("/obj/", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal)
            .ToList();
        Assert.Equal(Repo.Hosts.Select(static h => $"services/{h}/Dockerfile"), files);
    }

    [Fact]
    public void DockerIgnore_KeepsBuildOutputOut_AndWhatPublishNeedsIn()
    {
        var ignore = DockerIgnore.Load();
        Assert.All(["services/Relay.Ingress/bin", "shared/Relay.Core/obj", ".git", "tests/Relay.Testing"], p => Assert.True(ignore.Excludes(p), $"{p} is sent to the build"));
        Assert.All(["global.json", "Directory.Build.props", "Directory.Packages.props", ".editorconfig", "shared", "services", "services/Relay.Ingress/Program.cs"], p => Assert.False(ignore.Excludes(p), $"{p} is left out of the build"));
    }

    /// <summary>The checks catch drift: each mutation of a real Dockerfile is reported.</summary>
    [Theory]
    [InlineData("Relay.Ingress", "EXPOSE 8080", "EXPOSE 8081", "EXPOSEs 8081")]
    [InlineData("Relay.Ingress", "ASPNETCORE_HTTP_PORTS=8080", "ASPNETCORE_HTTP_PORTS=9000", "EXPOSEs 8080, but the host listens on 9000")]
    [InlineData("Relay.Ingress", "GET /healthz", "GET /health", "HEALTHCHECK asks '/health'")]
    [InlineData("Relay.Routing", "/dev/tcp/127.0.0.1/8080", "/dev/tcp/127.0.0.1/5000", "HEALTHCHECK asks port 5000")]
    [InlineData("Relay.Routing", "services/Relay.Routing/Relay.Routing.csproj", "services/Relay.Router/Relay.Router.csproj", "does not exist")]
    [InlineData("Relay.Routing", "USER $APP_UID", "USER root", "runs as root")]
    [InlineData("Relay.Routing", "COPY shared/ shared/", "COPY shared/Relay.Core/ shared/Relay.Core/", "shared/Relay.Bus/Relay.Bus.csproj is not under a folder")]
    [InlineData("Relay.Standalone", "ENV ASPNETCORE_URLS=http://+:8080", "ENV ASPNETCORE_HTTP_PORTS=8080", "listens on localhost:8080, which is unreachable")]
    [InlineData("Relay.FanOut", "FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime", "FROM mcr.microsoft.com/dotnet/sdk:10.0 AS runtime", "not the ASP.NET Core runtime image")]
    public void Checks_ReportAMutatedDockerfile(string host, string from, string to, string expected)
    {
        var path = Repo.PathOf("services", host, "Dockerfile");
        var text = File.ReadAllText(path);
        Assert.Contains(from, text, StringComparison.Ordinal);
        var problems = DockerChecks.Problems(host, Dockerfile.Parse(path, text.Replace(from, to, StringComparison.Ordinal)));
        Assert.Contains(problems, p => p.Contains(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void BuildStage_UsesTheSdkMajorOfGlobalJson()
    {
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Repo.PathOf("global.json")));
        var version = json.RootElement.GetProperty("sdk").GetProperty("version").GetString()!;
        var channel = string.Join('.', version.Split('.').Take(2));
        foreach (var host in Repo.Hosts)
        {
            var file = Dockerfile.Load(Repo.PathOf("services", host, "Dockerfile"));
            Assert.All(file.Stages, s => Assert.EndsWith(":" + channel, s.Image.Split(' ')[0], StringComparison.Ordinal));
        }
    }
}

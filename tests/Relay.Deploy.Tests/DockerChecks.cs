using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace Relay.Deploy.Tests;

/// <summary>What an image's Dockerfile must agree with in the code; each check returns the problems it found.</summary>
internal static partial class DockerChecks
{
    [GeneratedRegex(@"dotnet\s+publish\s+(\S+\.csproj)")]
    private static partial Regex PublishedProject();

    [GeneratedRegex(@"/dev/tcp/[^/\s]+/(\d+)|https?://[^/:\s]+:(\d+)")]
    private static partial Regex ProbePort();

    [GeneratedRegex(@"GET (/[^\s\\]*)|https?://[^/\s]+(/[^\s'""]*)")]
    private static partial Regex ProbePath();

    public static List<string> Problems(string host, Dockerfile file)
    {
        var problems = new List<string>();
        if (file.Stages.Count < 2)
        {
            problems.Add("not multi-stage (one FROM)");
        }

        var build = file.Stages.FirstOrDefault(static s => s.All("RUN").Any(r => PublishedProject().IsMatch(r.Arguments)));
        if (build is null)
        {
            problems.Add("no stage runs 'dotnet publish <project>.csproj'");
        }
        else
        {
            if (!build.Image.StartsWith("mcr.microsoft.com/dotnet/sdk:", StringComparison.Ordinal))
            {
                problems.Add($"publishes on {build.Image}, not the .NET SDK image");
            }

            var project = PublishedProject().Match(string.Join('\n', build.All("RUN").Select(static r => r.Arguments))).Groups[1].Value;
            var expected = $"services/{host}/{host}.csproj";
            if (project != expected)
            {
                problems.Add($"publishes {project}, not its own project {expected}");
            }

            if (!File.Exists(Repo.PathOf(project.Split('/'))))
            {
                problems.Add($"publishes {project}, which does not exist");
            }
            else
            {
                problems.AddRange(CopiedReferences(project, build));
            }
        }

        var final = file.Final;
        if (!final.Image.StartsWith("mcr.microsoft.com/dotnet/aspnet:", StringComparison.Ordinal))
        {
            problems.Add($"runs on {final.Image}, not the ASP.NET Core runtime image");
        }

        var user = final.All("USER").LastOrDefault()?.Arguments;
        if (user is null or "root" or "0" or "0:0")
        {
            problems.Add($"runs as {(user ?? "root (no USER)")}");
        }

        var entry = final.All("ENTRYPOINT").LastOrDefault();
        if (entry is null || !Dockerfile.Command(entry.Arguments).SequenceEqual(["dotnet", host + ".dll"]))
        {
            problems.Add($"ENTRYPOINT is not [\"dotnet\", \"{host}.dll\"]");
        }

        var listens = HostFacts.Listens(host, final.Environment);
        foreach (var (listenHost, port) in listens.Where(static l => !HostFacts.Reachable(l.Host)))
        {
            problems.Add($"the host listens on {listenHost}:{port}, which is unreachable from outside the container");
        }

        var listenPorts = listens.Select(static l => l.Port).ToHashSet();
        var exposed = final.All("EXPOSE").SelectMany(static e => Dockerfile.Words(e.Arguments))
            .Select(static w => int.Parse(w.Split('/')[0], System.Globalization.CultureInfo.InvariantCulture)).ToHashSet();
        if (exposed.Count == 0)
        {
            problems.Add("EXPOSEs no port");
        }

        foreach (var port in exposed.Where(p => !listenPorts.Contains(p)))
        {
            problems.Add($"EXPOSEs {port}, but the host listens on {string.Join(", ", listenPorts)}");
        }

        var health = final.All("HEALTHCHECK").LastOrDefault();
        if (health is null)
        {
            problems.Add("no HEALTHCHECK");
        }
        else
        {
            var probe = string.Join(' ', Dockerfile.Command(health.Arguments[(health.Arguments.IndexOf("CMD", StringComparison.Ordinal) + 3)..]));
            var portMatch = ProbePort().Match(probe);
            var probePort = portMatch.Success ? int.Parse(portMatch.Groups[1].Success ? portMatch.Groups[1].Value : portMatch.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture) : -1;
            if (!listenPorts.Contains(probePort))
            {
                problems.Add($"HEALTHCHECK asks port {probePort}, but the host listens on {string.Join(", ", listenPorts)}");
            }

            var pathMatch = ProbePath().Match(probe);
            var path = pathMatch.Groups[1].Success ? pathMatch.Groups[1].Value : pathMatch.Groups[2].Value;
            var mapped = HostFacts.ProbePaths(host);
            if (path is not ("/healthz" or "/readyz") || !mapped.Contains(path))
            {
                problems.Add($"HEALTHCHECK asks '{path}', which is not a health path {host} maps ({string.Join(", ", mapped.Where(static p => p.EndsWith('z')))})");
            }
        }

        return problems;
    }

    /// <summary>Every project the published one references (transitively) lies under a folder the build stage copies.</summary>
    private static IEnumerable<string> CopiedReferences(string project, DockerStage build)
    {
        var copied = build.All("COPY")
            .Where(static c => !c.Arguments.Contains("--from", StringComparison.Ordinal))
            .SelectMany(static c => Dockerfile.Words(c.Arguments).SkipLast(1))
            .Select(static s => s.TrimEnd('/'))
            .ToList();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Queue<string>([project]);
        while (pending.TryDequeue(out var current))
        {
            if (!seen.Add(current))
            {
                continue;
            }

            if (!copied.Any(c => current.StartsWith(c + "/", StringComparison.Ordinal)))
            {
                yield return $"{current} is not under a folder the build stage copies ({string.Join(", ", copied)})";
            }

            var folder = Path.GetDirectoryName(current)!.Replace('\\', '/');
            foreach (var reference in XDocument.Load(Repo.PathOf(current.Split('/'))).Descendants("ProjectReference"))
            {
                var include = reference.Attribute("Include")!.Value.Replace('\\', '/');
                pending.Enqueue(Repo.Relative(Path.GetFullPath(Repo.PathOf([.. folder.Split('/'), .. include.Split('/')]))));
            }
        }

        foreach (var source in copied.Where(static c => !File.Exists(Repo.PathOf(c.Split('/'))) && !Directory.Exists(Repo.PathOf(c.Split('/')))))
        {
            yield return $"COPY {source}: no such file or folder in the repository";
        }

        var ignored = DockerIgnore.Load();
        foreach (var source in copied.Where(ignored.Excludes))
        {
            yield return $"COPY {source}: excluded by .dockerignore";
        }
    }
}

/// <summary>The root .dockerignore's patterns, enough to say whether a path is excluded (no negations used here).</summary>
internal sealed class DockerIgnore(IReadOnlyList<string> patterns)
{
    public IReadOnlyList<string> Patterns { get; } = patterns;

    public static DockerIgnore Load() => new(File.ReadAllLines(Repo.PathOf(".dockerignore"))
        .Select(static l => l.Trim())
        .Where(static l => l.Length > 0 && !l.StartsWith('#'))
        .ToList());

    public bool Excludes(string path)
    {
        path = path.TrimEnd('/');
        foreach (var raw in Patterns)
        {
            var pattern = raw.TrimEnd('/');
            var regex = "^" + Regex.Escape(pattern).Replace(@"\*\*/", "(.*/)?", StringComparison.Ordinal).Replace(@"\*", "[^/]*", StringComparison.Ordinal) + "(/.*)?$";
            if (Regex.IsMatch(path, regex))
            {
                return true;
            }
        }

        return false;
    }
}

namespace Relay.Bench;

/// <summary>Where the harness finds the repository's builds and writes its logs.</summary>
internal sealed class BenchEnvironment
{
    public static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(30);

    public BenchEnvironment(string repoRoot)
    {
        RepoRoot = repoRoot;
        LogDirectory = Path.Combine(repoRoot, "artifacts", "bench", "logs");
    }

    public string RepoRoot { get; }

    public string LogDirectory { get; }

    /// <summary>The repository root: the first folder above the harness that holds Relay.Cloud.sln.</summary>
    public static BenchEnvironment Locate()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Relay.Cloud.sln")))
            {
                return new BenchEnvironment(directory.FullName);
            }
        }

        throw new InvalidOperationException($"no Relay.Cloud.sln above {AppContext.BaseDirectory}; run the harness from the repository's build output");
    }

    /// <summary>A file of the repository's Release build, or a clear error saying how to build it.</summary>
    public string RepoPath(string relative)
    {
        var path = Path.Combine(RepoRoot, relative);
        return File.Exists(path)
            ? path
            : throw new FileNotFoundException($"{relative} is missing: build first with `dotnet build Relay.Cloud.sln -c Release`", path);
    }

    /// <summary>An executable on the PATH (or /usr/sbin), or a clear error saying which package provides it.</summary>
    public static string FindExecutable(string name, string install)
    {
        var paths = (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(':').Append("/usr/sbin").Append("/usr/bin");
        foreach (var directory in paths)
        {
            var candidate = Path.Combine(directory, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new FileNotFoundException($"{name} is not installed: run `{install}` (./bench.sh does)");
    }
}

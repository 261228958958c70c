using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Running;

namespace Relay.Bench.Micro;

/// <summary>
/// <c>dotnet run -c Release --project tests/Relay.Bench.Micro -- --filter '*'</c>. Without a <c>--job</c>, the short
/// job runs (3 warm-ups, 3 iterations, one process per benchmark): the whole suite takes a few minutes. Pass
/// <c>--job default</c> (or <c>medium</c>, <c>long</c>) for tighter figures.
/// </summary>
internal static class Program
{
    public static void Main(string[] args)
    {
        if (!Array.Exists(args, static arg => arg is "--job" or "-j" || arg.StartsWith("--job=", StringComparison.Ordinal)))
        {
            args = [.. args, "--job", "short"];
        }

        IConfig config = DefaultConfig.Instance.AddColumn(PerDeliveryColumn.Time, PerDeliveryColumn.Allocated);
        if (ArtifactsPath() is { } artifacts)
        {
            config = config.WithArtifactsPath(artifacts);
        }

        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
    }

    // Reports go to the repository's (git-ignored) artifacts/bench-micro, wherever the command runs; --artifacts overrides.
    private static string? ArtifactsPath()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Relay.Cloud.sln")))
            {
                return Path.Combine(directory.FullName, "artifacts", "bench-micro");
            }
        }

        return null;
    }
}

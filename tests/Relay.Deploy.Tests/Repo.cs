using Relay.Testing;

namespace Relay.Deploy.Tests;

/// <summary>Paths in the repository the deploy artifacts live in and name.</summary>
internal static class Repo
{
    public static string Root => NodeScript.RepositoryRoot;

    public static string PathOf(params string[] parts) => Path.Combine([Root, .. parts]);

    /// <summary>The service folders that are runnable hosts (they have a Program.cs), by folder name.</summary>
    public static IReadOnlyList<string> Hosts { get; } =
        Directory.EnumerateDirectories(PathOf("services"))
            .Where(static d => File.Exists(Path.Combine(d, "Program.cs")))
            .Select(static d => Path.GetFileName(d)!)
            .Order(StringComparer.Ordinal)
            .ToList();

    /// <summary>Hosts deployed as AWS Lambda functions (terraform's lambda module), not in the cluster or under Dapr.</summary>
    public static IReadOnlySet<string> LambdaHosts { get; } = new HashSet<string>(["Relay.Functions"], StringComparer.Ordinal);

    /// <summary>The services the cluster runs (with Dapr sidecars): every host but the standalone one and the Lambda ones.</summary>
    public static IReadOnlyList<string> ClusterServices { get; } =
        Hosts.Where(static h => h != "Relay.Standalone" && !LambdaHosts.Contains(h)).ToList();

    /// <summary>The repository-relative path with forward slashes, for messages and for comparing with paths in artifacts.</summary>
    public static string Relative(string path) => Path.GetRelativePath(Root, path).Replace('\\', '/');
}

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

    /// <summary>The repository-relative path with forward slashes, for messages and for comparing with paths in artifacts.</summary>
    public static string Relative(string path) => Path.GetRelativePath(Root, path).Replace('\\', '/');
}

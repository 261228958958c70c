using YamlDotNet.RepresentationModel;

namespace Relay.Deploy.Tests;

/// <summary>The Kubernetes files under infra/k8s: every YAML document, with the file it came from.</summary>
internal static class Manifests
{
    public static string Folder => Repo.PathOf("infra", "k8s");

    public static IReadOnlyList<string> Files =>
        Directory.EnumerateFiles(Folder, "*.yaml", SearchOption.AllDirectories)
            .Concat(Directory.EnumerateFiles(Folder, "*.yml", SearchOption.AllDirectories))
            .Order(StringComparer.Ordinal)
            .ToList();

    public static IEnumerable<(string File, YamlMappingNode Doc)> Documents(string folder) =>
        Directory.EnumerateFiles(folder, "*.yaml")
            .Where(static f => Path.GetFileName(f) != "kustomization.yaml")
            .Order(StringComparer.Ordinal)
            .SelectMany(static f => Yaml.LoadAll(f).Select(d => (Repo.Relative(f), d)));

    /// <summary>The base's resources (the files its kustomization lists).</summary>
    public static IReadOnlyList<(string File, YamlMappingNode Doc)> Base
    {
        get
        {
            var folder = Path.Combine(Folder, "base");
            var kustomization = Yaml.Load(Path.Combine(folder, "kustomization.yaml"));
            return kustomization.Items("resources").Select(static r => ((YamlScalarNode)r).Value!)
                .SelectMany(r => Yaml.LoadAll(Path.Combine(folder, r)).Select(d => (Repo.Relative(Path.Combine(folder, r)), d)))
                .ToList();
        }
    }

    public static IEnumerable<YamlMappingNode> OfKind(this IEnumerable<(string File, YamlMappingNode Doc)> docs, string kind) =>
        docs.Where(d => d.Doc.Text("kind") == kind).Select(static d => d.Doc);

    public static string Name(this YamlNode doc) => doc.Text("metadata", "name") ?? "";

    public static IEnumerable<YamlMappingNode> Containers(this YamlNode deployment) =>
        deployment.Items("spec", "template", "spec", "containers").Cast<YamlMappingNode>();
}

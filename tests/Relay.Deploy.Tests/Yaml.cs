using YamlDotNet.RepresentationModel;

namespace Relay.Deploy.Tests;

/// <summary>YAML documents as YamlDotNet's representation model, with small helpers to walk them.</summary>
internal static class Yaml
{
    /// <summary>Every document in <paramref name="path"/> (a Kubernetes file may hold several, separated by ---).</summary>
    public static IReadOnlyList<YamlMappingNode> LoadAll(string path)
    {
        var stream = new YamlStream();
        using (var reader = new StringReader(File.ReadAllText(path)))
        {
            stream.Load(reader);
        }

        return stream.Documents
            .Select(static d => d.RootNode)
            .Where(static n => n is not YamlScalarNode { Value: null or "" })
            .Select(n => n as YamlMappingNode ?? throw new InvalidDataException($"{Repo.Relative(path)}: a document is not a mapping"))
            .ToList();
    }

    public static YamlMappingNode Load(string path) => LoadAll(path).Single();

    public static YamlNode? Get(this YamlNode? node, params string[] keys)
    {
        foreach (var key in keys)
        {
            if (node is not YamlMappingNode map || !map.Children.TryGetValue(new YamlScalarNode(key), out node))
            {
                return null;
            }
        }

        return node;
    }

    public static string? Text(this YamlNode? node, params string[] keys) => (node.Get(keys) as YamlScalarNode)?.Value;

    public static IEnumerable<YamlNode> Items(this YamlNode? node, params string[] keys) =>
        node.Get(keys) is YamlSequenceNode seq ? seq.Children : [];

    public static IEnumerable<KeyValuePair<string, YamlNode>> Entries(this YamlNode? node, params string[] keys) =>
        node.Get(keys) is YamlMappingNode map
            ? map.Children.Select(static c => new KeyValuePair<string, YamlNode>(((YamlScalarNode)c.Key).Value!, c.Value))
            : [];

    /// <summary>Every node under <paramref name="node"/>, depth first, itself included.</summary>
    public static IEnumerable<YamlNode> Descendants(this YamlNode node) => node.AllNodes;
}

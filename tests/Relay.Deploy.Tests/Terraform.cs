using System.Text.Json;
using System.Text.RegularExpressions;

namespace Relay.Deploy.Tests;

/// <summary>
/// The Terraform files as HashiCorp's HCL parser reads them (npm @cdktf/hcl2json, run with Node.js from
/// tests/Relay.Deploy.Tests/hcl), and the checks a module tree must pass: every var.x declared, every module input
/// a variable of that module (and every required one given), every module output used exists, every variable typed,
/// described and validated.
/// </summary>
internal static partial class Terraform
{
    public static string Folder => Repo.PathOf("terraform");


    private static readonly HashSet<string> MetaArguments = ["source", "version", "count", "for_each", "providers", "depends_on"];

    [GeneratedRegex(@"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)")]
    private static partial Regex VariableReference();

    [GeneratedRegex(@"\bmodule\.([A-Za-z_][A-Za-z0-9_-]*)(?:\[[^\]]*\])?\.([A-Za-z_][A-Za-z0-9_-]*)")]
    private static partial Regex ModuleOutputReference();

    private static readonly Lazy<IReadOnlyDictionary<string, JsonElement>> Parsed = new(static () =>
        Parse(Directory.EnumerateFiles(Folder, "*.tf", SearchOption.AllDirectories).Where(static f => !f.Contains("/.terraform/", StringComparison.Ordinal)).ToList()));

    /// <summary>Every .tf file under terraform/, by repository-relative path.</summary>
    public static IReadOnlyDictionary<string, JsonElement> Files => Parsed.Value;

    /// <summary>Parses <paramref name="paths"/> in one Node.js run; throws with the parser's message when one does not parse.</summary>
    public static IReadOnlyDictionary<string, JsonElement> Parse(IReadOnlyList<string> paths)
    {
        ParserScript.Require("@cdktf/hcl2json", "the HCL parser");
        var (exitCode, output, error) = ParserScript.Run("hcl2json.cjs", paths, input: null, TimeSpan.FromSeconds(120));
        if (exitCode != 0)
        {
            throw new InvalidDataException("a Terraform file does not parse: " + error.Replace(Repo.Root + "/", "", StringComparison.Ordinal));
        }

        using var json = JsonDocument.Parse(output);
        return json.RootElement.EnumerateObject().ToDictionary(static p => p.Name.StartsWith('/') ? Repo.Relative(p.Name) : p.Name, static p => p.Value.Clone());
    }

    /// <summary>The blocks of one kind (variable, module, output, …) across <paramref name="files"/>: (file, label, body).</summary>
    public static IEnumerable<(string File, string Label, JsonElement Body)> Blocks(IEnumerable<KeyValuePair<string, JsonElement>> files, string kind) =>
        from file in files
        where file.Value.TryGetProperty(kind, out _)
        from labelled in file.Value.GetProperty(kind).EnumerateObject()
        from body in labelled.Value.EnumerateArray()
        select (file.Key, labelled.Name, body);

    /// <summary>Every problem in the tree <paramref name="files"/> (repository-relative path to parsed file).</summary>
    public static List<string> Problems(IReadOnlyDictionary<string, JsonElement> files)
    {
        var problems = new List<string>();
        var modules = files.GroupBy(static f => Path.GetDirectoryName(f.Key)!.Replace('\\', '/')).ToDictionary(static g => g.Key, static g => g.ToList());
        foreach (var (folder, folderFiles) in modules)
        {
            var variables = Blocks(folderFiles, "variable").ToList();
            var declared = variables.Select(static v => v.Label).ToHashSet();
            foreach (var (file, label, body) in variables)
            {
                foreach (var required in new[] { "type", "description", "validation" })
                {
                    if (!body.TryGetProperty(required, out var value) || (value.ValueKind == JsonValueKind.String && string.IsNullOrWhiteSpace(value.GetString())))
                    {
                        problems.Add($"{file}: variable \"{label}\" has no {required}");
                    }
                }
            }

            foreach (var file in folderFiles)
            {
                foreach (var used in Strings(file.Value).SelectMany(static s => VariableReference().Matches(s)).Select(static m => m.Groups[1].Value).Distinct())
                {
                    if (!declared.Contains(used))
                    {
                        problems.Add($"{file.Key}: var.{used} is not declared in {folder}");
                    }
                }
            }

            var calls = Blocks(folderFiles, "module").ToList();
            foreach (var (file, label, body) in calls)
            {
                var source = body.GetProperty("source").GetString()!;
                if (!source.StartsWith("./", StringComparison.Ordinal) && !source.StartsWith("../", StringComparison.Ordinal))
                {
                    continue; // a registry module: its inputs are its own
                }

                var target = Repo.Relative(Path.GetFullPath(Path.Combine(Repo.PathOf(folder.Split('/')), source)));
                if (!modules.TryGetValue(target, out var targetFiles))
                {
                    problems.Add($"{file}: module \"{label}\" sources {source}, where there are no .tf files");
                    continue;
                }

                var inputs = Blocks(targetFiles, "variable").ToDictionary(static v => v.Label, static v => v.Body);
                var passed = body.EnumerateObject().Select(static p => p.Name).Where(static n => !MetaArguments.Contains(n)).ToHashSet();
                problems.AddRange(passed.Where(p => !inputs.ContainsKey(p)).Select(p => $"{file}: module \"{label}\" is given {p}, which {target} does not declare"));
                problems.AddRange(inputs.Where(i => !i.Value.TryGetProperty("default", out _) && !passed.Contains(i.Key)).Select(i => $"{file}: module \"{label}\" is not given {i.Key}, which {target} requires"));

                var outputs = Blocks(targetFiles, "output").Select(static o => o.Label).ToHashSet();
                foreach (var used in folderFiles.SelectMany(static f => Strings(f.Value)).SelectMany(static s => ModuleOutputReference().Matches(s)).Where(m => m.Groups[1].Value == label).Select(static m => m.Groups[2].Value).Distinct())
                {
                    if (!outputs.Contains(used))
                    {
                        problems.Add($"{folder}: module.{label}.{used} is not an output of {target}");
                    }
                }
            }
        }

        return problems;
    }

    private static IEnumerable<string> Strings(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.String => [element.GetString()!],
        JsonValueKind.Object => element.EnumerateObject().SelectMany(static p => Strings(p.Value).Prepend(p.Name)),
        JsonValueKind.Array => element.EnumerateArray().SelectMany(Strings),
        _ => [],
    };
}

using System.Text.RegularExpressions;

namespace Relay.Deploy.Tests;

/// <summary>docs/deploy.md names only files, Terraform outputs and variables that exist.</summary>
public sealed partial class DeployDocTests
{
    private static string Doc => File.ReadAllText(Repo.PathOf("docs", "deploy.md"));

    [GeneratedRegex(@"(?<![\w./-])((?:infra|terraform|services|docs|tests|\.github)/[\w./*-]*[\w*])")]
    private static partial Regex RepositoryPath();

    [GeneratedRegex(@"output (?:-raw |-json )?([a-z_]+)")]
    private static partial Regex OutputUse();

    [GeneratedRegex(@"-var ([a-z_]+)=")]
    private static partial Regex VariableUse();

    [Fact]
    public void PathsItNames_Exist()
    {
        var doc = Doc;

        // A path with a shell variable in it (services/Relay.$s/Dockerfile) is a pattern, not a file.
        var paths = RepositoryPath().Matches(doc)
            .Where(m => m.Index + m.Length >= doc.Length || !".$".Contains(doc[m.Index + m.Length], StringComparison.Ordinal) || doc[(m.Index + m.Length)..].StartsWith(". ", StringComparison.Ordinal) || doc[(m.Index + m.Length)..].StartsWith(".\n", StringComparison.Ordinal))
            .Select(static m => m.Groups[1].Value.TrimEnd('.'))
            .Distinct()
            .ToList();
        Assert.True(paths.Count > 10);
        foreach (var path in paths)
        {
            if (path.Contains('*', StringComparison.Ordinal))
            {
                var folder = path[..path.IndexOf('*', StringComparison.Ordinal)].TrimEnd('/');
                Assert.True(Directory.Exists(Repo.PathOf(folder.Split('/'))), $"docs/deploy.md names {path}: no folder {folder}");
                continue;
            }

            var local = Repo.PathOf(path.Split('/'));
            Assert.True(File.Exists(local) || Directory.Exists(local), $"docs/deploy.md names {path}, which does not exist");
        }
    }

    [Fact]
    public void TerraformOutputsAndVariablesItUses_Exist()
    {
        var root = Terraform.Files.Where(static f => f.Key.StartsWith("terraform/examples/aws/", StringComparison.Ordinal)).ToList();
        var outputs = Terraform.Blocks(root, "output").Select(static o => o.Label).ToHashSet();
        var variables = Terraform.Blocks(root, "variable").Select(static v => v.Label).ToHashSet();
        var usedOutputs = OutputUse().Matches(Doc).Select(static m => m.Groups[1].Value).Concat(Regex.Matches(Doc, @"`([a-z_]+)` output|the `([a-z_]+)`").SelectMany(static m => m.Groups.Values.Skip(1).Where(static g => g.Success).Select(static g => g.Value))).ToHashSet();
        var usedVariables = VariableUse().Matches(Doc).Select(static m => m.Groups[1].Value).ToHashSet();
        Assert.NotEmpty(usedOutputs);
        Assert.NotEmpty(usedVariables);
        Assert.All(usedOutputs.Where(static o => o.Contains('_', StringComparison.Ordinal)), o => Assert.True(outputs.Contains(o), $"docs/deploy.md uses output {o}, which terraform/examples/aws does not have"));
        Assert.All(usedVariables, v => Assert.True(variables.Contains(v), $"docs/deploy.md sets -var {v}, which terraform/examples/aws does not declare"));
    }

    [Fact]
    public void RelayEnvironmentVariablesItSets_NameRealSettings()
    {
        var names = Regex.Matches(Doc, @"\bRelay__[A-Za-z0-9_]+").Select(static m => m.Value).Where(static n => n != "Relay__Section__Key").Distinct().ToList(); // that one is the naming pattern
        Assert.True(names.Count > 10, "docs/deploy.md names fewer Relay__ settings than it does: is the match broken?");
        var problems = names.Select(RelaySettings.Problem).OfType<string>().ToList();
        Assert.True(problems.Count == 0, "docs/deploy.md: " + string.Join("\n", problems));
    }
}

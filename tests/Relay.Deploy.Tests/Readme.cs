namespace Relay.Deploy.Tests;

/// <summary>What README.md says, where an artifact must follow it.</summary>
internal static class Readme
{
    /// <summary>The test command: the first fenced block after the line that starts "Run all tests".</summary>
    public static string TestCommand
    {
        get
        {
            var lines = File.ReadAllLines(Repo.PathOf("README.md"));
            var at = Array.FindIndex(lines, static l => l.StartsWith("Run all tests", StringComparison.Ordinal));
            Assert.True(at >= 0, "README.md has no 'Run all tests' paragraph");
            var open = Array.FindIndex(lines, at, static l => l.StartsWith("```", StringComparison.Ordinal));
            var close = Array.FindIndex(lines, open + 1, static l => l.StartsWith("```", StringComparison.Ordinal));
            var command = string.Join('\n', lines[(open + 1)..close]).Trim();
            Assert.False(string.IsNullOrEmpty(command), "README.md's test command block is empty");
            return command;
        }
    }
}

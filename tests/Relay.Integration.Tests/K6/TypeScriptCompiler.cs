using System.Diagnostics;
using System.Text;
using Relay.Testing;

namespace Relay.Integration.Tests.K6;

/// <summary>Runs the TypeScript compiler that <c>tests/load/k6/package.json</c> pins over a tsconfig, with Node.js.</summary>
internal static class TypeScriptCompiler
{
    /// <summary>The k6 scripts' folder, <c>tests/load/k6</c>.</summary>
    public static string K6Folder => Path.Combine(NodeScript.RepositoryRoot, "tests", "load", "k6");

    /// <summary>The folder's npm packages (typescript and @types/k6); fails loudly when they were not installed.</summary>
    public static string NodeModules
    {
        get
        {
            var folder = Path.Combine(K6Folder, "node_modules");
            if (!File.Exists(Path.Combine(folder, "typescript", "bin", "tsc")) || !Directory.Exists(Path.Combine(folder, "@types", "k6")))
            {
                throw new InvalidOperationException(
                    $"the npm packages that type-check the k6 scripts are missing: run 'npm ci --prefix tests/load/k6' in {NodeScript.RepositoryRoot} (./test.sh does it)");
            }

            return folder;
        }
    }

    /// <summary>Runs <c>tsc -p project --pretty false</c> (plus <paramref name="extraArguments"/>) in <paramref name="project"/>; returns the exit code and everything it printed.</summary>
    public static async Task<(int ExitCode, string Output)> CheckAsync(string project, params string[] extraArguments)
    {
        var start = new ProcessStartInfo("node")
        {
            WorkingDirectory = project,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(Path.Combine(NodeModules, "typescript", "bin", "tsc"));
        start.ArgumentList.Add("-p");
        start.ArgumentList.Add(project);
        start.ArgumentList.Add("--pretty");
        start.ArgumentList.Add("false");
        foreach (var argument in extraArguments)
        {
            start.ArgumentList.Add(argument);
        }

        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException("node did not start");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException("node did not start: install Node.js 20 (Debian package nodejs)", e);
        }

        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"tsc -p {project} did not finish within 3 minutes");
            }

            var output = new StringBuilder().Append(await stdout).Append(await stderr).ToString();
            return (process.ExitCode, output);
        }
    }
}

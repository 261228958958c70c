using System.Diagnostics;

namespace Relay.Deploy.Tests;

/// <summary>
/// Runs one of the Node.js scripts beside the npm parsers in tests/Relay.Deploy.Tests/hcl (HCL, PromQL): checks the
/// package is installed, feeds it standard input if given, and returns its exit code, output and error output.
/// </summary>
internal static class ParserScript
{
    /// <summary>The folder of the scripts and their node_modules.</summary>
    public static readonly string Folder = Path.Combine(Repo.Root, "tests", "Relay.Deploy.Tests", "hcl");

    /// <summary>Throws with the install command when <paramref name="package"/> (e.g. <c>@cdktf/hcl2json</c>) is missing.</summary>
    public static void Require(string package, string what)
    {
        if (!File.Exists(Path.Combine(Folder, "node_modules", package, "package.json")))
        {
            throw new InvalidOperationException(
                $"{what} is missing: run 'npm ci --prefix tests/Relay.Deploy.Tests/hcl' in {Repo.Root} (./test.sh does it whenever the folder's package-lock.json changed)");
        }
    }

    /// <summary>Runs <paramref name="script"/> with <paramref name="arguments"/>, <paramref name="input"/> on its standard input.</summary>
    public static (int ExitCode, string Output, string Error) Run(string script, IEnumerable<string> arguments, string? input, TimeSpan timeout)
    {
        var start = new ProcessStartInfo("node") { WorkingDirectory = Folder, RedirectStandardInput = input is not null, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(script);
        foreach (var argument in arguments)
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
            if (input is not null)
            {
                process.StandardInput.Write(input);
                process.StandardInput.Close();
            }

            if (!process.WaitForExit(timeout))
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException($"{script} did not finish within {timeout.TotalSeconds:0} s");
            }

            return (process.ExitCode, stdout.GetAwaiter().GetResult(), stderr.GetAwaiter().GetResult());
        }
    }
}

using System.Diagnostics;

namespace Relay.Testing;

/// <summary>Runs scripts of <c>tests/interop-*</c> with Node.js. Fails loudly when Node or the npm packages are missing.</summary>
public static class NodeScript
{
    /// <summary>The repository root (the folder holding Relay.Cloud.sln).</summary>
    public static string RepositoryRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Relay.Cloud.sln")))
            {
                dir = dir.Parent;
            }

            return dir?.FullName ?? throw new InvalidOperationException("cannot find Relay.Cloud.sln above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>What to install when <c>node</c> does not start.</summary>
    public const string Install = "install Node.js 20 (Debian package nodejs)";

    /// <summary>Starts a script and returns the running process (the caller reads its output and waits).</summary>
    public static Process Start(string script, params string[] arguments) =>
        Process.Start(StartInfo(Path.Combine(RepositoryRoot, "tests", "interop-js"), "", "npm packages for the interop tests are", script, arguments))
        ?? throw new InvalidOperationException("node did not start: " + Install);

    /// <summary>
    /// How to run <paramref name="script"/> of <paramref name="folder"/> with Node.js, output redirected; throws, saying
    /// what to run, when its npm package <paramref name="module"/> (<c>""</c>: any) is missing (<paramref name="what"/>
    /// names it: "MQTT.js (npm mqtt) is").
    /// </summary>
    public static ProcessStartInfo StartInfo(string folder, string module, string what, string script, IEnumerable<string> arguments)
    {
        var path = Path.Combine(folder, "node_modules", module);
        if (!Directory.Exists(path))
        {
            throw new InvalidOperationException($"{what} missing at {path}: run 'npm ci --prefix {folder}' (./test.sh does it)");
        }

        var start = new ProcessStartInfo("node") { WorkingDirectory = folder, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(script);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        return start;
    }
}

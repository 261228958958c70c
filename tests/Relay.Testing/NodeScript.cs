using System.Diagnostics;

namespace Relay.Testing;

/// <summary>Runs a script of <c>tests/interop-js</c> with Node.js and collects its JSON lines. Fails loudly when Node or the npm packages are missing.</summary>
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

    /// <summary>Starts a script and returns the running process (the caller reads its output and waits).</summary>
    public static Process Start(string script, params string[] arguments)
    {
        var folder = Path.Combine(RepositoryRoot, "tests", "interop-js");
        if (!Directory.Exists(Path.Combine(folder, "node_modules")))
        {
            throw new InvalidOperationException($"npm packages for the interop tests are missing: run 'npm ci --prefix {folder}' (./test.sh does it)");
        }

        var start = new ProcessStartInfo("node") { WorkingDirectory = folder, RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(script);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        return Process.Start(start) ?? throw new InvalidOperationException("node did not start: install Node.js 20 (Debian package nodejs)");
    }
}

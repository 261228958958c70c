using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Relay.Integration.Tests.Distributed;
using Xunit.Abstractions;

namespace Relay.Integration.Tests.Publish;

/// <summary>
/// <c>dotnet publish</c> of each service and of the standalone host succeeds, the folder holds that project's own
/// settings (none of a referenced service's), and the published output starts and answers <c>/healthz</c>. Publishes
/// with <c>--no-build</c> from the Release build the test run starts from (./test.sh builds the solution first), so
/// nothing is rebuilt under the processes other tests run from those folders.
/// </summary>
public sealed class PublishedServiceTests(ITestOutputHelper output)
{
    private static readonly TimeSpan PublishTimeout = TimeSpan.FromMinutes(3);
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);
    private static readonly string RepositoryRoot = RelayCluster.RepositoryRoot;

    [Theory]
    [InlineData("Relay.Standalone")]
    [InlineData("Relay.Ingress")]
    [InlineData("Relay.Auth")]
    [InlineData("Relay.Routing")]
    [InlineData("Relay.FanOut")]
    public async Task Publish_OfAService_SucceedsAndTheOutputServesHealthz(string project)
    {
        var projectDirectory = Path.Combine(RepositoryRoot, "services", project);
        Assert.True(File.Exists(Path.Combine(projectDirectory, "bin", "Release", "net10.0", project + ".dll")), $"{project} is not built: build the solution in Release first (./test.sh does)");
        var folder = Directory.CreateTempSubdirectory("relay-publish-").FullName;
        try
        {
            var (exitCode, log) = await RunAsync("dotnet", ["publish", Path.Combine(projectDirectory, project + ".csproj"), "-c", "Release", "--no-build", "--disable-build-servers", "--nologo", "-v", "q", "-o", folder], RepositoryRoot, PublishTimeout);
            Assert.True(exitCode == 0, $"dotnet publish {project} exited with {exitCode}:\n{log}");

            // The project's own settings, byte for byte, and no other project's.
            var own = Directory.GetFiles(projectDirectory, "appsettings*.json").Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray();
            var published = Directory.GetFiles(folder, "appsettings*.json").Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray();
            Assert.Equal(own, published);
            foreach (var name in own)
            {
                Assert.Equal(await File.ReadAllTextAsync(Path.Combine(projectDirectory, name!)), await File.ReadAllTextAsync(Path.Combine(folder, name!)));
            }

            await AssertServesHealthzAsync(project, folder);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private async Task AssertServesHealthzAsync(string project, string folder)
    {
        var port = RelayCluster.FreePort();
        var info = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = folder,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(Path.Combine(folder, project + ".dll"));
        info.ArgumentList.Add("--urls");
        info.ArgumentList.Add($"http://127.0.0.1:{port}");

        // As an operator starts it: the default environment, no settings beyond what was published, except the MQTT and
        // gRPC ports, free like the HTTP one (a machine with Debian's mosquitto running holds the default 1883).
        info.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        info.Environment.Remove("DOTNET_ENVIRONMENT");
        info.Environment["Relay__Mqtt__Port"] = RelayCluster.FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture);
        info.Environment["Relay__Grpc__Port"] = RelayCluster.FreePort().ToString(System.Globalization.CultureInfo.InvariantCulture);
        var log = new StringBuilder();
        using var process = Process.Start(info) ?? throw new InvalidOperationException("could not start " + project);
        process.OutputDataReceived += (_, e) => Append(log, e.Data);
        process.ErrorDataReceived += (_, e) => Append(log, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
            var deadline = DateTime.UtcNow + StartTimeout;
            while (true)
            {
                Assert.False(process.HasExited, $"the published {project} exited while starting:\n{Text(log)}");
                try
                {
                    using var response = await http.GetAsync(new Uri($"http://127.0.0.1:{port}/healthz"));
                    if (response.StatusCode == HttpStatusCode.OK)
                    {
                        output.WriteLine($"{project}: published and serving /healthz on port {port}");
                        return;
                    }
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                    // Not listening yet.
                }

                Assert.True(DateTime.UtcNow < deadline, $"the published {project} did not answer /healthz within {StartTimeout.TotalSeconds} s:\n{Text(log)}");
                await Task.Delay(200);
            }
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill();
                using var exited = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                await process.WaitForExitAsync(exited.Token);
            }
        }
    }

    private static async Task<(int ExitCode, string Log)> RunAsync(string file, string[] arguments, string directory, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(file)
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        // The test host runs under MSBuild's environment (dotnet test); a child build must find its own SDK.
        foreach (var key in info.Environment.Keys.Where(static k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            info.Environment.Remove(key);
        }

        var log = new StringBuilder();
        using var process = Process.Start(info) ?? throw new InvalidOperationException("could not start " + file);
        process.OutputDataReceived += (_, e) => Append(log, e.Data);
        process.ErrorDataReceived += (_, e) => Append(log, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            return (-1, $"timed out after {timeout.TotalSeconds} s\n{Text(log)}");
        }

        // WaitForExitAsync has waited for the redirected streams to end too.
        return (process.ExitCode, Text(log));
    }

    private static void Append(StringBuilder log, string? line)
    {
        if (line is not null)
        {
            lock (log)
            {
                log.AppendLine(line);
            }
        }
    }

    private static string Text(StringBuilder log)
    {
        lock (log)
        {
            return log.ToString();
        }
    }
}

using System.Globalization;
using System.Text.Json;
using Relay.Bench;
using Relay.Bench.Reporting;
using Relay.Bench.Scenarios;
using Relay.Bench.Targets;

// The load generator handles socket completions on the event thread instead of handing each to the thread pool:
// a shorter receive path of its own, so what it measures is the server's (servers start without this; see
// ServerProcess). Set the variable to 0 to measure with the default.
if (Environment.GetEnvironmentVariable(ServerProcess.InlineCompletions) is null)
{
    Environment.SetEnvironmentVariable(ServerProcess.InlineCompletions, "1");
}

if (args is ["idle-client", ..])
{
    // A child process of the idle scenario: holds connections so the parent is not limited by one process's descriptors.
    string Arg(string name) => args[Array.IndexOf(args, name) + 1];
    var target = Targets.ByName(Arg("--target"));
    return await IdleScenario.RunClientAsync(target, new Uri(Arg("--uri")), int.Parse(Arg("--count"), CultureInfo.InvariantCulture), int.Parse(Arg("--child"), CultureInfo.InvariantCulture));
}

if (args is ["soak-client", ..])
{
    // A child process of the soak scenario: holds its share of the connections and churns them.
    string Arg(string name) => args[Array.IndexOf(args, name) + 1];
    int Int(string name) => int.Parse(Arg(name), CultureInfo.InvariantCulture);
    return await SoakClient.RunAsync(Targets.ByName(Arg("--target")), new Uri(Arg("--uri")), Int("--count"), Int("--child"), Int("--first"), Int("--channels"), double.Parse(Arg("--churn"), CultureInfo.InvariantCulture));
}

if (args is ["socket-floor-server", ..])
{
    // A child process of socket-floor: accepts and holds connections, and reports its memory per connection.
    string Arg(string name) => args[Array.IndexOf(args, name) + 1];
    return SocketFloor.Serve(Arg("--mode"), int.Parse(Arg("--count"), CultureInfo.InvariantCulture));
}

if (args is ["socket-floor", ..])
{
    // What a .NET process pays per idle TCP connection before any server state (SocketFloor): printed, not written to
    // docs/benchmarks.md (the section that quotes it names this command).
    var at = Array.IndexOf(args, "--connections");
    var floorConnections = at > 0 ? int.Parse(args[at + 1], CultureInfo.InvariantCulture) : Math.Min(18_000, Limits.OpenFilesHard() - 1000);
    await SocketFloor.RunAsync(floorConnections, new Progress("socket-floor"));
    return 0;
}

if (args is ["--help" or "-h", ..])
{
    Console.WriteLine(BenchOptions.Usage);
    return 0;
}

BenchOptions options;
try
{
    options = BenchOptions.Parse(args);
}
catch (ArgumentException ex)
{
    Console.Error.WriteLine($"{ex.Message}\n\n{BenchOptions.Usage}");
    return 2;
}

var environment = BenchEnvironment.Locate();
var command = "dotnet tests/Relay.Bench/bin/Release/net10.0/Relay.Bench.dll " + string.Join(' ', args);
var targets = options.Targets.Select(Targets.ByName).ToList();
var results = new List<ScenarioResult>();
var descriptions = new Dictionary<string, string>();
var idleConnections = options.IdleConnections > 0 ? options.IdleConnections : Math.Max(1000, Limits.OpenFilesHard() - 1000);

foreach (var (scenario, description, specOf) in options.Runs())
{
    descriptions[scenario] = description;
    foreach (var target in targets)
    {
        if (scenario is "publish-http" or "soak" && target is not RelayTarget)
        {
            // The peers have no HTTP publish, and no resume with 'since' for the soak's reconnects to count on.
            continue;
        }

        try
        {
            var spec = specOf(target);
            results.Add(scenario == "soak" ? await SoakScenario.RunAsync(target, options.Soak(Limits.OpenFilesHard()), environment)
                : spec is null ? await IdleScenario.RunAsync(target, idleConnections, options.IdlePerProcess, environment)
                : await FanOutScenario.RunAsync(target, spec, environment));
        }
        catch (Exception ex) when (ex is InvalidOperationException or TimeoutException or IOException or System.Net.Sockets.SocketException)
        {
            Console.Error.WriteLine($"[{scenario}/{target.Name}] failed: {ex.Message}");
            results.Add(new ScenarioResult { Scenario = scenario, Target = target.Name, Error = ex.Message });
        }
    }
}

var machine = MachineInfo.Collect(Targets.PeerVersions(options.Targets));
var sections = new List<(string Markdown, string? Name)>();
if (results.Any(r => r.Scenario != "soak"))
{
    sections.Add((MarkdownReport.Render(results.Where(r => r.Scenario != "soak").ToList(), descriptions, command, machine, options.Section), options.Section));
}

// The soak's figures go into a section of their own (bench:soak), so a run of the other scenarios leaves them, and the reverse.
foreach (var soak in results.Where(r => r.Scenario == "soak"))
{
    if (soak.Soak is null)
    {
        Console.Error.WriteLine($"[soak/{soak.Target}] no figures: {soak.Error}");
        continue;
    }

    sections.Add((SoakReport.Render(soak.Soak, command, machine), SoakReport.Section));
}

foreach (var (markdown, name) in sections)
{
    Console.WriteLine();
    Console.WriteLine(markdown);
    if (options.MarkdownPath is not null)
    {
        MarkdownReport.WriteInto(Path.GetFullPath(options.MarkdownPath), markdown, name);
        Console.WriteLine($"wrote {options.MarkdownPath}");
    }
}

if (options.JsonPath is not null)
{
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(options.JsonPath))!);
    await File.WriteAllTextAsync(options.JsonPath, JsonSerializer.Serialize(new { machine, command, results }, new JsonSerializerOptions { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals }));
}

return results.Any(r => r.Error is not null) ? 1 : 0;

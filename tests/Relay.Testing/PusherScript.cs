using System.Diagnostics;
using System.Text.Json;

namespace Relay.Testing;

/// <summary>
/// A script of <c>tests/interop-pusher</c> (pusher-js, the pusher server SDK, Laravel Echo) run with Node.js: its JSON
/// lines as they come, commands written to its standard input, killed by its PID when disposed (<see cref="LineProcess"/>).
/// Missing npm packages fail the test and say what to run.
/// </summary>
public sealed class PusherScript : LineProcess
{
    private PusherScript(ProcessStartInfo start)
        : base(start, NodeScript.Install)
    {
    }

    public static string Folder => Path.Combine(NodeScript.RepositoryRoot, "tests", "interop-pusher");

    /// <summary>The options every script takes: the node's port and a key (name and secret) of <paramref name="app"/>.</summary>
    public static string Options(RelayServer server, string key, object? extra = null) => Options(server.BaseAddress.Port, key, extra);

    /// <summary>The options every script takes, for a node listening on <paramref name="port"/> (a service process's).</summary>
    public static string Options(int port, string key, object? extra = null)
    {
        var colon = key.IndexOf(':', StringComparison.Ordinal);
        var name = key[..colon];
        var options = new Dictionary<string, object?>
        {
            ["port"] = port,
            ["key"] = name,
            ["secret"] = key[(colon + 1)..],
            ["appId"] = name[..name.IndexOf('.', StringComparison.Ordinal)],
        };
        if (extra is not null)
        {
            foreach (var property in JsonSerializer.SerializeToElement(extra).EnumerateObject())
            {
                if (property.Value.ValueKind == JsonValueKind.Null)
                {
                    continue;
                }

                options[property.Name] = property.Value;
            }
        }

        return JsonSerializer.Serialize(options);
    }

    public static PusherScript Start(string script, params string[] arguments)
    {
        var start = NodeScript.StartInfo(Folder, "pusher-js", "the Pusher interop clients (npm pusher-js) are", script, arguments);
        start.RedirectStandardInput = true;
        return new PusherScript(start);
    }

    /// <summary>Runs a one-shot script of the server SDK and returns its one result line.</summary>
    public static async Task<JsonElement> RunAsync(TimeSpan timeout, string script, params string[] arguments)
    {
        using var process = Start(script, arguments);
        var line = await process.NextAsync(_ => true, timeout);
        return line;
    }

    /// <summary>Writes one command line (serialized as JSON).</summary>
    public void Send(object command) => WriteLine(JsonSerializer.Serialize(command));

    /// <summary>The next JSON line of kind <paramref name="kind"/>, skipping others; fails after <paramref name="timeout"/>.</summary>
    public Task<JsonElement> NextAsync(string kind, TimeSpan timeout, string? channel = null) =>
        NextJsonAsync(e => e.TryGetProperty("kind", out var k) && k.GetString() == kind
            && (channel is null || (e.TryGetProperty("channel", out var c) && c.GetString() == channel)), timeout, channel is null ? $"'{kind}' line" : $"'{kind}' line on {channel}");

    /// <summary>The next JSON line matching <paramref name="match"/>, skipping others.</summary>
    public Task<JsonElement> NextAsync(Func<JsonElement, bool> match, TimeSpan timeout) => NextJsonAsync(match, timeout, "matching line");
}

using System.Text.RegularExpressions;

namespace Relay.Integration.Tests.K6;

/// <summary>The k6 scripts speak only the v1 contract: its frame types and its paths (a cheap guard against a typo the type-checker cannot see).</summary>
public sealed partial class K6ScriptProtocolTests
{
    /// <summary>Request types and server frame types of the v1 wire protocol.</summary>
    private static readonly HashSet<string> FrameTypes =
    [
        "subscribe", "unsubscribe", "publish", "presence", "history", "auth", "ping",
        "connected", "ok", "error", "message", "disconnect", "pong",
    ];

    /// <summary>The v1 paths, with <c>{channel}</c> for a channel segment.</summary>
    private static readonly HashSet<string> Paths =
    [
        "/v1/realtime", "/v1/sse", "/v1/tokens", "/v1/channels",
        "/v1/channels/{channel}/messages", "/v1/channels/{channel}/presence",
    ];

    [GeneratedRegex("""(?:\btype\s*:\s*|\bcase\s+|\.type\s*===?\s*)"([A-Za-z_]+)(?=")""")]
    private static partial Regex FrameTypeLiteral();

    [GeneratedRegex("""/v1/(?:\$\{[^}]*\}|[^\s"'`?#)$])*""")]
    private static partial Regex PathLiteral();

    [GeneratedRegex("""\$\{[^}]*\}""")]
    private static partial Regex Interpolation();

    private static Dictionary<string, string> ReadScripts()
    {
        var folder = TypeScriptCompiler.K6Folder;
        var files = Directory.EnumerateFiles(folder, "*.ts").Concat(Directory.EnumerateFiles(Path.Combine(folder, "lib"), "*.ts")).ToList();
        Assert.NotEmpty(files);
        return files.ToDictionary(f => Path.GetRelativePath(folder, f), File.ReadAllText);
    }

    [Fact]
    public void Scripts_UseOnlyTheProtocolsFrameTypes()
    {
        var used = ReadScripts()
            .SelectMany(static s => FrameTypeLiteral().Matches(s.Value).Select(m => (File: s.Key, Type: m.Groups[1].Value)))
            .ToList();

        var unknown = used.Where(static u => !FrameTypes.Contains(u.Type)).Select(static u => $"{u.File}: \"{u.Type}\"").Distinct().ToList();
        Assert.True(unknown.Count == 0, "frame types outside the v1 protocol: " + string.Join(", ", unknown));

        // Not vacuous: the fan-out's conversation is there.
        var types = used.Select(static u => u.Type).ToHashSet();
        Assert.Superset(new HashSet<string> { "connected", "subscribe", "publish", "ok", "error", "message", "disconnect" }, types);
    }

    [Fact]
    public void Scripts_UseOnlyTheProtocolsPaths()
    {
        var used = ReadScripts()
            .SelectMany(static s => PathLiteral().Matches(s.Value).Select(m => (File: s.Key, Path: Interpolation().Replace(m.Value, "{channel}").TrimEnd('/', '.', ',', ':', ';'))))
            .ToList();

        var unknown = used.Where(static u => !Paths.Contains(u.Path)).Select(static u => $"{u.File}: {u.Path}").Distinct().ToList();
        Assert.True(unknown.Count == 0, "paths outside the v1 API: " + string.Join(", ", unknown));
        Assert.Superset(new HashSet<string> { "/v1/realtime", "/v1/channels/{channel}/messages" }, used.Select(static u => u.Path).ToHashSet());
    }
}

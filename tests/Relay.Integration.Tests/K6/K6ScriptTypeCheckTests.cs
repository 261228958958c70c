using System.Text.Json;

namespace Relay.Integration.Tests.K6;

/// <summary>
/// The k6 load scripts in <c>tests/load/k6</c> cannot run here (there is no k6 binary), so they are type-checked
/// against <c>@types/k6</c>; the second test proves that check catches a misused k6 API.
/// </summary>
public sealed class K6ScriptTypeCheckTests
{
    private static readonly string[] Scripts = ["ws-fanout.ts", "http-publish.ts", "lib/relay.ts"];

    [Fact]
    public async Task Scripts_TypeCheckAgainstK6Types_WithNoErrors()
    {
        var (exitCode, output) = await TypeScriptCompiler.CheckAsync(TypeScriptCompiler.K6Folder, "--listFiles");

        // --listFiles prints every file it checked as an absolute path; the rest is diagnostics.
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var diagnostics = string.Join('\n', lines.Where(static l => !Path.IsPathRooted(l)));
        Assert.True(exitCode == 0, $"tsc -p tests/load/k6 exited {exitCode}:\n{diagnostics}");
        Assert.True(diagnostics.Length == 0, "tsc printed diagnostics:\n" + diagnostics);

        var checkedFiles = lines.Where(Path.IsPathRooted).Select(static l => l.Replace('\\', '/')).ToList();
        foreach (var script in Scripts)
        {
            Assert.Contains(checkedFiles, f => f.EndsWith("/tests/load/k6/" + script, StringComparison.Ordinal));
        }

        // The k6 module imports resolved to @types/k6 (not to nothing).
        Assert.Contains(checkedFiles, static f => f.EndsWith("/node_modules/@types/k6/websockets/index.d.ts", StringComparison.Ordinal));
        Assert.Contains(checkedFiles, static f => f.EndsWith("/node_modules/@types/k6/http/index.d.ts", StringComparison.Ordinal));
    }

    [Fact]
    public async Task TypeCheck_FailsOnACopyOfTheFanOutScriptThatMisusesTheK6WebSocketApi()
    {
        var nodeModules = TypeScriptCompiler.NodeModules;
        var temp = Directory.CreateTempSubdirectory("relay-k6-typecheck-");
        try
        {
            foreach (var file in Directory.EnumerateFiles(TypeScriptCompiler.K6Folder, "*.ts"))
            {
                File.Copy(file, Path.Combine(temp.FullName, Path.GetFileName(file)));
            }

            var lib = Directory.CreateDirectory(Path.Combine(temp.FullName, "lib"));
            foreach (var file in Directory.EnumerateFiles(Path.Combine(TypeScriptCompiler.K6Folder, "lib"), "*.ts"))
            {
                File.Copy(file, Path.Combine(lib.FullName, Path.GetFileName(file)));
            }

            // The copy resolves "k6/…" and the "k6" types through the real packages.
            Directory.CreateSymbolicLink(Path.Combine(temp.FullName, "node_modules"), nodeModules);
            var baseConfig = JsonSerializer.Serialize(Path.Combine(TypeScriptCompiler.K6Folder, "tsconfig.json"));
            await File.WriteAllTextAsync(Path.Combine(temp.FullName, "tsconfig.json"), $$"""
                { "extends": {{baseConfig}}, "include": ["*.ts", "lib/**/*.ts"] }
                """);

            // Control: the untouched copy passes, so a failure below comes from the wrong call alone.
            var (controlExit, controlOutput) = await TypeScriptCompiler.CheckAsync(temp.FullName);
            Assert.True(controlExit == 0, $"the unmodified copy should type-check, tsc exited {controlExit}:\n{controlOutput}");

            // k6/websockets' send() takes string | ArrayBuffer | ArrayBufferView | Blob, not an object: a classic mistake.
            var script = Path.Combine(temp.FullName, "ws-fanout.ts");
            var lines = (await File.ReadAllLinesAsync(script)).ToList();
            lines.Add("import { WebSocket as WrongOnPurpose } from \"k6/websockets\";");
            lines.Add("export function wrongOnPurpose(): void {");
            lines.Add("    new WrongOnPurpose(\"ws://127.0.0.1:9/v1/realtime\").send({ type: \"ping\" });");
            lines.Add("}");
            await File.WriteAllLinesAsync(script, lines);
            var wrongLine = lines.Count - 1;

            var (exitCode, output) = await TypeScriptCompiler.CheckAsync(temp.FullName);

            Assert.True(exitCode != 0, "tsc accepted a script that passes an object to WebSocket.send():\n" + output);
            Assert.Contains($"ws-fanout.ts({wrongLine},", output, StringComparison.Ordinal);
            Assert.Contains("error TS2345", output, StringComparison.Ordinal);
        }
        finally
        {
            temp.Delete(recursive: true);
        }
    }
}

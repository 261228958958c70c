using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Relay.Testing;

namespace Relay.Services.Tests.Testing;

/// <summary>Relay.Testing's <see cref="LineProcess"/> against real <c>/bin/sh -c</c> scripts.</summary>
public sealed class LineProcessTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task WaitForLine_ScriptPrintingLines_GivesThemInOrderAndTheExitCode()
    {
        using var process = Shell("for i in 1 2 3 4 5; do echo line-$i; done; echo oops >&2; exit 3");

        for (var i = 1; i <= 5; i++)
        {
            Assert.Equal($"line-{i}", await process.WaitForLineAsync(static l => l.StartsWith("line-", StringComparison.Ordinal), Timeout, "'line-' line"));
        }

        // The two streams are read apart: the stderr line may come before, between or after them.
        Assert.Equal(3, await process.ExitAsync(Timeout));
        Assert.Contains("stderr: oops", process.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WaitForLine_StandardErrorLine_ComesAsPrintedAndIsMarkedInOutput()
    {
        using var process = Shell("echo 'Connection error: not authorised.' >&2; exit 5");

        Assert.Equal("Connection error: not authorised.", await process.WaitForLineAsync(static l => l.Contains("error", StringComparison.Ordinal), Timeout, "line with 'error'"));
        Assert.Equal(5, await process.ExitAsync(Timeout));
        Assert.Equal("stderr: Connection error: not authorised.", process.Output);
    }

    [Fact]
    public async Task WaitForLine_NoMatchWhileRunning_TimesOutWithTheLastLinesInItsMessage()
    {
        using var process = Shell("i=1; while [ $i -le 300 ]; do echo line-$i; i=$((i+1)); done; exec sleep 300");
        await process.WaitForLineAsync(static l => l == "line-300", Timeout, "'line-300' line");

        var failure = await Assert.ThrowsAsync<TimeoutException>(() => process.WaitForLineAsync(static l => l == "never", TimeSpan.FromSeconds(1), "'never' line"));

        Assert.Contains("no 'never' line within", failure.Message, StringComparison.Ordinal);
        Assert.Contains("still running", failure.Message, StringComparison.Ordinal);
        Assert.Contains("line-201\n", failure.Message, StringComparison.Ordinal);
        Assert.EndsWith("line-300", failure.Message, StringComparison.Ordinal);

        // The last 100 lines, not all 300: the earlier ones are counted.
        Assert.DoesNotMatch(new Regex("^line-200$", RegexOptions.Multiline), failure.Message);
        Assert.Contains("(200 earlier lines left out)", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WaitForLine_ProcessExitsWithoutTheLine_FailsSayingItExitedAndWhatItPrinted()
    {
        using var process = Shell("echo only; echo broken >&2; exit 7");

        // Fails when the output ends, not after the timeout.
        var failure = await Assert.ThrowsAsync<TimeoutException>(() => process.WaitForLineAsync(static l => l == "never", TimeSpan.FromMinutes(10), "'never' line"));

        Assert.Contains("its output ended (exited with code 7)", failure.Message, StringComparison.Ordinal);
        Assert.Contains("only", failure.Message, StringComparison.Ordinal);
        Assert.Contains("stderr: broken", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NextJson_MixedOutput_SkipsStderrAndLinesThatAreNotJson()
    {
        using var process = Shell("""echo '{"n":1}' >&2; echo 'not json'; echo '{ broken'; echo '{"n":2}'; echo '{"n":3}'""");

        var found = await process.NextJsonAsync(static e => e.GetProperty("n").GetInt32() >= 1, Timeout, "line with n");

        Assert.Equal(2, found.GetProperty("n").GetInt32());
        Assert.Equal(3, (await process.NextJsonAsync(static _ => true, Timeout, "any JSON line")).GetProperty("n").GetInt32());
    }

    [Fact]
    public async Task Output_MoreLinesThanKept_KeepsTheLastAndSaysHowManyWent()
    {
        using var process = Shell("i=1; while [ $i -le 25 ]; do echo line-$i; i=$((i+1)); done", maxLines: 10);
        Assert.Equal(0, await process.ExitAsync(Timeout));

        var lines = process.Output.Split('\n');
        Assert.Equal(["(15 earlier lines left out)", .. Enumerable.Range(16, 10).Select(static i => $"line-{i}")], lines);

        // Unread lines are bounded the same way: the oldest went, and a wait for one says so.
        Assert.Equal("line-16", await process.WaitForLineAsync(static _ => true, Timeout, "any line"));
        var failure = await Assert.ThrowsAsync<TimeoutException>(() => process.WaitForLineAsync(static l => l == "line-1", Timeout, "'line-1' line"));
        Assert.Contains("15 lines went unread", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Dispose_ProcessIgnoringItsStdinAndSignals_KillsItAndItsChildren()
    {
        // It reads nothing from its standard input (left open), ignores SIGTERM/SIGHUP/SIGINT and has two children.
        var process = Shell("trap '' TERM HUP INT; sleep 300 & echo child $!; sleep 300 & echo child $!; wait", input: true);
        var pids = new List<int> { process.Id };
        for (var i = 0; i < 2; i++)
        {
            var line = await process.WaitForLineAsync(static l => l.StartsWith("child ", StringComparison.Ordinal), Timeout, "'child' line");
            pids.Add(int.Parse(line.AsSpan(6), CultureInfo.InvariantCulture));
        }

        Assert.All(pids, static pid => Assert.True(Alive(pid), $"{pid} is not running before Dispose"));

        process.Dispose();

        foreach (var pid in pids)
        {
            var watch = Stopwatch.StartNew();
            while (Alive(pid) && watch.Elapsed < Timeout)
            {
                await Task.Delay(50);
            }

            Assert.False(Alive(pid), $"{pid} still runs {Timeout} after Dispose");
        }
    }

    private static LineProcess Shell(string script, bool input = false, int maxLines = LineProcess.DefaultMaxLines)
    {
        var start = new ProcessStartInfo("/bin/sh") { RedirectStandardInput = input };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(script);
        return new LineProcess(start, "install a POSIX shell at /bin/sh", maxLines);
    }

    /// <summary>Whether <paramref name="pid"/> is a running sh or sleep (not gone, not a zombie waiting to be reaped, not a reused id).</summary>
    private static bool Alive(int pid)
    {
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException or IOException)
        {
            return false;
        }

        // "pid (comm) state …": the name may hold spaces, so read around the last ')'.
        var close = stat.LastIndexOf(')');
        var name = stat[(stat.IndexOf('(', StringComparison.Ordinal) + 1)..close];
        var state = stat[close + 2];
        return state != 'Z' && state != 'X' && name is "sh" or "dash" or "sleep";
    }
}

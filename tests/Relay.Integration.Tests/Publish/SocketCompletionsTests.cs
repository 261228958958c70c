using Relay.Integration.Tests.Distributed;
using Relay.Testing;

namespace Relay.Integration.Tests.Publish;

/// <summary>
/// <c>Relay:Ingress:InlineSocketCompletions</c> reaches the runtime: the standalone host, started as it ships and told
/// it has four cores, runs one socket event thread per core when completions run inline (the default) and one in all
/// when they do not, and an operator's <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS</c> wins over the setting.
/// The runtime names those threads <c>.NET Sockets</c>; the count is read from <c>/proc</c> once the node has served a
/// realtime client (a publish delivered back to it).
/// </summary>
public sealed class SocketCompletionsTests
{
    private const int Cores = 4;

    [Fact]
    public Task Default_RunsCompletionsInline_OnOneEventThreadPerCore() => AssertEventThreadsAsync(new(), Cores);

    [Fact]
    public Task SettingOff_LeavesCompletionsOnTheThreadPool_WithOneEventThread() =>
        AssertEventThreadsAsync(new() { ["Relay__Ingress__InlineSocketCompletions"] = "false" }, 1);

    [Fact]
    public Task OperatorsEnvironment_WinsOverTheSetting() =>
        AssertEventThreadsAsync(new() { ["DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS"] = "0" }, 1);

    private static async Task AssertEventThreadsAsync(Dictionary<string, string> extra, int expected)
    {
        var settings = new Dictionary<string, string> { ["DOTNET_PROCESSOR_COUNT"] = Cores.ToString(System.Globalization.CultureInfo.InvariantCulture) };
        foreach (var (key, value) in extra)
        {
            settings[key] = value;
        }

        await using var host = await ServiceProcess.StartStandaloneAsync(settings);
        var realtime = new Uri($"ws://127.0.0.1:{host.Port}/v1/realtime?key={Uri.EscapeDataString(RelayServer.Key)}");
        await using (var client = await TestSocket.ConnectAsync(realtime))
        {
            await client.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "threads" });
            await client.RequestAsync(new() { ["type"] = "publish", ["channel"] = "threads", ["data"] = "x" });
            var message = await client.ReceiveMessageAsync();
            Assert.Equal("x", message.GetProperty("data").GetString());
        }

        var threads = Directory.GetDirectories($"/proc/{host.ProcessId}/task")
            .Count(static task => File.ReadAllText(Path.Combine(task, "comm")).Trim() == ".NET Sockets");
        Assert.True(threads == expected, $"{threads} socket event threads, expected {expected}:\n{host.Tail()}");
    }
}

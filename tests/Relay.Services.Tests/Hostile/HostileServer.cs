using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Relay.Testing;

namespace Relay.Services.Tests.Hostile;

/// <summary>
/// A server for a fuzzer: the test settings with the fuzzer's own on top, every log line kept, and the check each
/// fuzzer ends with (nothing was logged as an error: a decoder that throws is a finding even when the client got an answer).
/// </summary>
internal sealed class HostileServer : IAsyncDisposable
{
    private readonly LogCapture _logs;

    private HostileServer(RelayServer server, LogCapture logs)
    {
        Server = server;
        _logs = logs;
    }

    public RelayServer Server { get; }

    public static async Task<HostileServer> StartAsync(IDictionary<string, string?>? settings = null)
    {
        var logs = new LogCapture();
        return new HostileServer(await RelayServer.StartAsync(settings, s => s.AddLogging(b => b.AddProvider(logs))), logs);
    }

    /// <summary>Fails with the first few lines when anything was logged at Error or above.</summary>
    public void AssertNoErrorLogged()
    {
        var errors = _logs.Entries.Where(static e => e.Level >= LogLevel.Error).Select(static e => $"{e.Category}: {e.Message} {e.Exception?.GetType().Name}: {e.Exception?.Message}").ToList();
        Assert.True(errors.Count == 0, $"{errors.Count} errors logged: " + string.Join("; ", errors.Take(5)));
    }

    public ValueTask DisposeAsync() => Server.DisposeAsync();
}

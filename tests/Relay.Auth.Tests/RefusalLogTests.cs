using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Relay.Auth.Tests;

/// <summary>A refusal tells the client less than the server's debug log, and a flood of refusals does not flood the log.</summary>
public sealed class RefusalLogTests
{
    private const int AuthenticationFailed = 2001;

    [Fact]
    public async Task Refusals_AtRate_LogTheirDetailAtDebugAtMostTenASecond()
    {
        await using var server = await AuthServer.StartAsync().WaitAsync(AuthServer.Timeout);
        for (var i = 0; i < 500; i++)
        {
            var result = server.Authenticator.Authenticate(Context(i % 2 == 0 ? "test.nope:some-secret-0123456789" : "test.root:wrong-secret-0123456789"));
            Assert.Equal(("invalid key or token", 40102), (result.Error?.Message, result.Error?.Code));
        }

        var logged = Refusals(server);
        Assert.Equal(10, logged.Count);
        Assert.All(logged, static e => Assert.Equal(LogLevel.Debug, e.Level));
        Assert.Contains(logged, static e => e.Message.Contains("unknown key 'test.nope'", StringComparison.Ordinal));
        Assert.Contains(logged, static e => e.Message.Contains("wrong secret for key 'test.root'", StringComparison.Ordinal));

        // The next second lets ten more through.
        server.Clock.Advance(TimeSpan.FromSeconds(1));
        for (var i = 0; i < 50; i++)
        {
            server.Authenticator.Authenticate(Context("test.nope:some-secret-0123456789"));
        }

        Assert.Equal(20, Refusals(server).Count);
    }

    private static List<(LogLevel Level, EventId EventId, string Message)> Refusals(AuthServer server) =>
        [.. server.Logs.Entries.Where(static e => e.EventId.Id == AuthenticationFailed)];

    private static DefaultHttpContext Context(string key)
    {
        var context = new DefaultHttpContext();
        context.Request.Headers.Authorization = "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes(key));
        return context;
    }
}

using System.Globalization;
using Relay.Testing;

namespace Relay.Services.Tests.Routing;

/// <summary>
/// The routing service's meter on <c>/metrics</c>: each request its channel authority handled, by kind and outcome, and
/// the messages it sequenced, from a real host driven by a WebSocket client.
/// </summary>
public sealed class RoutingMetricsTests
{
    [Fact(Timeout = 60_000)]
    public async Task Requests_AreCountedByKindAndOutcome_AndPublishedMessagesSequenced()
    {
        await using var server = await RelayServer.StartAsync();
        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
        await using var socket = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key, "metrics"));
        Assert.Equal("ok", (await socket.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "counted" })).GetProperty("type").GetString());
        for (var n = 1; n <= 3; n++)
        {
            Assert.Equal("ok", (await socket.RequestAsync(new() { ["type"] = "publish", ["channel"] = "counted", ["data"] = n })).GetProperty("type").GetString());
        }

        Assert.Equal("ok", (await socket.RequestAsync(new() { ["type"] = "history", ["channel"] = "counted", ["limit"] = 10 })).GetProperty("type").GetString());

        var text = await http.GetStringAsync(new Uri("metrics", UriKind.Relative));
        Assert.Equal(3, Sample(text, "relay_routing_requests_total", "publish", "ok"));
        Assert.Equal(1, Sample(text, "relay_routing_requests_total", "history", "ok"));
        Assert.True(Sample(text, "relay_routing_requests_total", "position", "ok") >= 1, text);
        Assert.Equal(3, PrometheusText.Value(text, "relay_routing_messages_sequenced_total"));
    }

    // A labelled sample's value: the line of `name` whose labels include kind and outcome as given; 0 when absent.
    private static double Sample(string text, string name, string kind, string outcome)
    {
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith(name + "{", StringComparison.Ordinal) && line.Contains($"kind=\"{kind}\"", StringComparison.Ordinal) && line.Contains($"outcome=\"{outcome}\"", StringComparison.Ordinal))
            {
                return double.Parse(line[(line.IndexOf('}', StringComparison.Ordinal) + 2)..].Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }
}

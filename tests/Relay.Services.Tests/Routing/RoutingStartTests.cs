using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Relay.Bus;
using Relay.Bus.Routing;
using Relay.Testing;

namespace Relay.Services.Tests.Routing;

/// <summary>
/// A host that has started serves publishes at once: routing is on the bus before start-up returns. It used to register
/// from its background service's ExecuteAsync, which .NET 10 runs after start returns, so a publish in the first
/// milliseconds got 503 "no routing service is running".
/// </summary>
public sealed class RoutingStartTests
{
    [Fact]
    public async Task RoutingRequest_TheMomentStartReturns_IsAnswered()
    {
        for (var run = 0; run < 5; run++)
        {
            await using var server = await RelayServer.StartAsync();
            var reply = await server.Services.GetRequiredService<IRelayBus>().SendToRoutingAsync(new PositionRequest("test", "start:now"), CancellationToken.None);
            Assert.True(reply is PositionReply, $"run {run}: {reply}");
        }
    }

    [Fact]
    public async Task Publish_RightAfterStart_IsStored_NotRefusedForWantOfRouting()
    {
        for (var run = 0; run < 5; run++)
        {
            await using var server = await RelayServer.StartAsync();
            using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
            using var response = await http.PostAsync(new Uri("v1/channels/start:first/messages", UriKind.Relative), new StringContent("""{"data":1}""", Encoding.UTF8, "application/json"));
            Assert.True(response.StatusCode == HttpStatusCode.Created, $"run {run}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        }
    }
}

using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Relay.Testing;

namespace Relay.Kafka.Tests;

/// <summary>
/// Waits until a started server's routing answers. Routing registers on the bus from a background service, which .NET
/// 10 runs after start returns: a request in the first milliseconds can get 50300 "no routing service is running".
/// </summary>
internal static class RoutingReady
{
    public static async Task WaitAsync(RelayServer server)
    {
        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(RelayServer.Key)));
        for (var attempt = 0; attempt < 100; attempt++)
        {
            // A history read goes to routing and writes nothing (the firehose sees no message).
            using var response = await http.GetAsync(new Uri("v1/channels/ready-probe/messages", UriKind.Relative));
            if (response.StatusCode == HttpStatusCode.OK)
            {
                return;
            }

            await Task.Delay(50);
        }

        throw new TimeoutException("routing did not answer within 5 s of start");
    }
}

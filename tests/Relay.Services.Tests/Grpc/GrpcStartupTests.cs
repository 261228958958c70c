using System.Net;
using System.Net.Sockets;
using Grpc.Core;
using Microsoft.Extensions.Options;
using Relay.Grpc.V1;
using Relay.Testing;

namespace Relay.Services.Tests.Grpc;

/// <summary>Start-up and stop: a taken port and invalid settings fail naming the setting; gRPC can be turned off; open streams do not hold up a stop.</summary>
public sealed class GrpcStartupTests
{
    [Fact]
    public async Task Start_PortInUse_FailsNamingTheSetting()
    {
        using var holder = new TcpListener(IPAddress.IPv6Any, 0);
        holder.Server.DualMode = true;
        holder.Start();
        var port = ((IPEndPoint)holder.LocalEndpoint).Port;

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Grpc:Port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture) }));

        Assert.Contains($"TCP port {port}", error.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Grpc:Port", error.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Grpc:Enabled=false", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_BadSettings_FailNamingEach()
    {
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => RelayServer.StartAsync(new Dictionary<string, string?>
        {
            ["Relay:Ingress:MaxMessageBytes"] = "65536",
            ["Relay:Grpc:MaxReceiveMessageBytes"] = "4096",
            ["Relay:Grpc:Port"] = "70000",
        }));

        Assert.Contains("Relay:Grpc:MaxReceiveMessageBytes is 4096", error.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Ingress:MaxMessageBytes", error.Message, StringComparison.Ordinal);
        Assert.Contains("Relay:Grpc:Port is 70000", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_Disabled_ServesNoGrpc()
    {
        await using var server = await RelayServer.StartAsync(new Dictionary<string, string?> { ["Relay:Grpc:Enabled"] = "false" });

        Assert.Null(server.GrpcPort);
        using var web = GrpcClients.Channel(server, web: true);
        var refused = await Assert.ThrowsAsync<RpcException>(() => GrpcClients.Client(web).ChannelsAsync(new ChannelsRequest(), GrpcClients.Options(GrpcClients.Key(RelayServer.Key))).ResponseAsync);
        Assert.NotEqual(StatusCode.OK, refused.StatusCode);
    }

    [Fact]
    public async Task Stop_WithOpenStreams_EndsPromptlyTellingThemToReconnect()
    {
        var server = await RelayServer.StartAsync();
        using var channel = GrpcClients.Channel(server);
        var streams = new List<GrpcStream>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                streams.Add(await GrpcStream.ConnectAsync(GrpcClients.Client(channel), GrpcClients.Key(RelayServer.Key)));
            }

            var watch = System.Diagnostics.Stopwatch.StartNew();
            await server.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(25));

            // The streams are told to go as the node stops; the host's 30 s shutdown timeout is never what ends it.
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"stopping took {watch.Elapsed}");
            var frames = await streams[0].DrainUntilEndedAsync();
            Assert.True(frames.Count > 0, $"no frame before the end; the call ended {streams[0].Ended?.Status}");
            Assert.Equal(50300, frames[^1].Disconnect.Code);
            Assert.True(frames[^1].Disconnect.Reconnect);
            Assert.Equal(StatusCode.Unavailable, streams[0].Ended!.StatusCode);
        }
        finally
        {
            foreach (var stream in streams)
            {
                await stream.DisposeAsync();
            }
        }
    }
}

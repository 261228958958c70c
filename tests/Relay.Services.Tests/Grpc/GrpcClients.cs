using System.Text;
using Grpc.Core;
using Grpc.Net.Client;
using Grpc.Net.Client.Web;
using Relay.Grpc.V1;
using Relay.Testing;

namespace Relay.Services.Tests.Grpc;

/// <summary>The .NET client generated from protos/relay/v1 (Grpc.Tools), over HTTP/2 to the gRPC port or gRPC-Web to the HTTP port.</summary>
internal static class GrpcClients
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(15);

    /// <summary>A channel to the gRPC port, or with <paramref name="web"/> gRPC-Web (binary, or <paramref name="mode"/>) to the HTTP port.</summary>
    public static GrpcChannel Channel(RelayServer server, bool web = false, GrpcWebMode mode = GrpcWebMode.GrpcWeb) => web
        ? GrpcChannel.ForAddress(server.BaseAddress, new GrpcChannelOptions { HttpHandler = new GrpcWebHandler(mode, new HttpClientHandler()), HttpVersion = System.Net.HttpVersion.Version11, HttpVersionPolicy = HttpVersionPolicy.RequestVersionExact, DisposeHttpClient = true })
        : GrpcChannel.ForAddress(server.GrpcAddress);

    public static Relay.Grpc.V1.Realtime.RealtimeClient Client(GrpcChannel channel) => new(channel);

    /// <summary>Metadata with a key as Basic auth, and optionally a client id.</summary>
    public static Metadata Key(string key, string? clientId = null)
    {
        var metadata = new Metadata { { "authorization", "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes(key)) } };
        if (clientId is not null)
        {
            metadata.Add("relay-client-id", clientId);
        }

        return metadata;
    }

    public static Metadata Bearer(string token) => new() { { "authorization", "Bearer " + token } };

    public static CallOptions Options(Metadata metadata) => new(metadata, DateTime.UtcNow + Timeout);

    public static Data Json(string json) => new() { Json = json };

    public static PublishRequest Publish(string channel, string json, string? id = null, string? name = null) => new()
    {
        Channel = channel,
        Messages = { new PublishMessage { Data = Json(json), Id = id ?? string.Empty, Name = name ?? string.Empty } },
    };

    /// <summary>The protocol's code a failed call carries in its ErrorInfo detail (and the relay-error-code trailer, which must agree).</summary>
    public static int RelayCode(RpcException exception)
    {
        var status = exception.GetRpcStatus() ?? throw new InvalidOperationException($"no google.rpc.Status detail on {exception.Status}");
        var info = status.GetDetail<Google.Rpc.ErrorInfo>() ?? throw new InvalidOperationException("no ErrorInfo detail");
        Assert.Equal("relay.v1", info.Domain);
        var code = int.Parse(info.Metadata["code"], System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(code.ToString(System.Globalization.CultureInfo.InvariantCulture), exception.Trailers.GetValue("relay-error-code"));
        Assert.Equal((int)exception.StatusCode, status.Code);
        return code;
    }
}

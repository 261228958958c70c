using System.Text;
using BenchmarkDotNet.Attributes;
using Relay.Bench.Micro.Delivery;
using Relay.Core.Messages;
using Relay.Core.Protocol;

namespace Relay.Bench.Micro.Benchmarks;

/// <summary>
/// The codec: <see cref="ClientFrameParser"/> on what a client sends, <see cref="ServerFrames"/> on what every
/// subscriber is sent. Parsing allocates the request and what it copies out of the frame (strings, <c>ref</c> and
/// <c>data</c> bytes) by design; the result list is reused, as the connection's receive loop reuses it.
/// </summary>
[MemoryDiagnoser]
public class CodecBenchmarks
{
    private const string PublishJson = """{"type":"publish","ref":17,"channel":"bench:room/lobby","name":"chat","id":"msg-000017","data":{"text":"hello from the codec benchmark","user":{"id":42,"name":"ada"},"tags":["a","b"]}}""";

    private static readonly byte[] PublishFrame = Encoding.UTF8.GetBytes(PublishJson);

    // Ten publishes in one array frame (a client may batch up to ClientFrameParser.MaxBatch).
    private static readonly byte[] BatchFrame = Encoding.UTF8.GetBytes("[" + string.Join(',', Enumerable.Repeat(PublishJson, 10)) + "]");

    private readonly List<ClientRequest> _requests = new(ClientFrameParser.MaxBatch);
    private RelayMessage _message = null!;
    private RelayMessage _binary = null!;
    private RelayMessage _cached = null!;

    [GlobalSetup]
    public void Setup()
    {
        _message = DeliveryRig.NewMessage(123_456, "epoch-a");
        _binary = new RelayMessage
        {
            App = DeliveryRig.App,
            Channel = DeliveryRig.Channel,
            Epoch = "epoch-a",
            Seq = 123_456,
            Data = DeliveryRig.Payload,
            DataIsJson = false,
            Timestamp = 1_767_225_600_000,
        };
        _cached = DeliveryRig.NewMessage(123_456, "epoch-a");
        ServerFrames.PushFrame(_cached);
        Check(ClientFrameParser.Parse(PublishFrame, _requests) is null && _requests.Count == 1 && _requests[0].Type == RequestType.Publish, "publish frame");
        _requests.Clear();
        Check(ClientFrameParser.Parse(BatchFrame, _requests) is null && _requests.Count == 10, "batch frame");
    }

    /// <summary>One <c>publish</c> request (about 190 bytes of JSON).</summary>
    [Benchmark]
    public int ParsePublish()
    {
        _requests.Clear();
        ClientFrameParser.Parse(PublishFrame, _requests);
        return _requests.Count;
    }

    /// <summary>An array frame of ten <c>publish</c> requests.</summary>
    [Benchmark]
    public int ParseBatchOf10()
    {
        _requests.Clear();
        ClientFrameParser.Parse(BatchFrame, _requests);
        return _requests.Count;
    }

    /// <summary>Encoding a <c>message</c> push with a JSON payload: done once per message, never per subscriber.</summary>
    [Benchmark]
    public byte[] EncodeMessagePush() => ServerFrames.EncodeMessagePush(_message);

    /// <summary>Encoding a <c>message</c> push with a binary payload (sent base64).</summary>
    [Benchmark]
    public byte[] EncodeMessagePushBase64() => ServerFrames.EncodeMessagePush(_binary);

    /// <summary>What every subscriber after the first costs: the frame cached on the message. Budget: 0 B.</summary>
    [Benchmark]
    public byte[] PushFrameCached() => ServerFrames.PushFrame(_cached);

    private static void Check(bool condition, string what)
    {
        if (!condition)
        {
            throw new InvalidOperationException($"the {what} did not parse as expected");
        }
    }
}

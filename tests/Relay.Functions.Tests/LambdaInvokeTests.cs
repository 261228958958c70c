using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Relay.Testing;

namespace Relay.Functions.Tests;

/// <summary>
/// <c>lambda:</c> hook targets through the Lambda Invoke REST API: a loopback endpoint stands in for Lambda, checks each
/// request's SigV4 signature with <see cref="SigV4Verifier"/> (its own implementation) and refuses one that does not
/// match, as Lambda does (403).
/// </summary>
public sealed class LambdaInvokeTests : IAsyncLifetime
{
    private const string AccessKeyId = "AKIDRELAYTEST0000001";
    private const string SecretAccessKey = "relay/test/secret+key/0123456789abcdefghij";
    private const string SessionToken = "session-token-for-the-test";
    private const string Arn = "arn:aws:lambda:eu-west-1:123456789012:function:moderate";
    private const string FailingArn = "arn:aws:lambda:eu-west-1:123456789012:function:broken:live";

    private readonly ConcurrentQueue<(string Path, string? Failure, JsonElement? Event)> _invocations = new();
    private LoopbackServer _lambda = null!;

    public async Task InitializeAsync() => _lambda = await LoopbackServer.StartAsync(InvokeAsync);

    public async Task DisposeAsync() => await _lambda.DisposeAsync();

    [Fact]
    public async Task Lambda_BeforePublishHook_SignatureVerifiedAndTheFunctionsTransformPublished()
    {
        await using var server = await RelayServer.StartAsync(Settings(SecretAccessKey));
        await using var subscriber = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));
        Assert.Equal("ok", (await subscriber.RequestAsync(new() { ["type"] = "subscribe", ["channel"] = "fn:room" })).GetProperty("type").GetString());

        var reply = await subscriber.RequestAsync(new() { ["type"] = "publish", ["channel"] = "fn:room", ["data"] = "hello lambda" });
        Assert.Equal("ok", reply.GetProperty("type").GetString());
        Assert.Equal("HELLO LAMBDA", (await subscriber.ReceiveMessageAsync()).GetProperty("data").GetString());

        var (path, failure, invokeEvent) = Assert.Single(_invocations);
        Assert.Null(failure);
        Assert.Equal("/2015-03-31/functions/" + Uri.EscapeDataString(Arn) + "/invocations", path);
        Assert.Equal("beforePublish", invokeEvent!.Value.GetProperty("type").GetString());
    }

    [Fact]
    public async Task Lambda_WrongSecret_EndpointRefusesTheSignatureAndThePublishFailsClosed()
    {
        await using var server = await RelayServer.StartAsync(Settings("not/the/secret/0123456789abcdefghijklmn"));
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));

        var reply = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "fn:room", ["data"] = "hello" });
        Assert.Equal(50300, reply.GetProperty("code").GetInt32());
        Assert.Contains("HTTP 403", reply.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal("the signature does not match", Assert.Single(_invocations).Failure);
    }

    [Fact]
    public async Task Lambda_FunctionError_IsAFailedCallNotAnAnswer()
    {
        await using var server = await RelayServer.StartAsync(Settings(SecretAccessKey));
        await using var publisher = await TestSocket.ConnectAsync(server.RealtimeUriWithKey(RelayServer.Key));

        var reply = await publisher.RequestAsync(new() { ["type"] = "publish", ["channel"] = "broken:room", ["data"] = "hello" });
        Assert.Equal(50300, reply.GetProperty("code").GetInt32());
        Assert.Contains("function error (Unhandled)", reply.GetProperty("message").GetString(), StringComparison.Ordinal);
        var (path, failure, _) = Assert.Single(_invocations);
        Assert.Null(failure);
        Assert.Equal("/2015-03-31/functions/" + Uri.EscapeDataString(FailingArn) + "/invocations", path);
    }

    private Dictionary<string, string?> Settings(string secret) => new()
    {
        ["Relay:Functions:Lambda:Endpoint"] = _lambda.Url.ToString(),
        ["Relay:Functions:Lambda:AccessKeyId"] = AccessKeyId,
        ["Relay:Functions:Lambda:SecretAccessKey"] = secret,
        ["Relay:Functions:Lambda:SessionToken"] = SessionToken,
        ["Relay:Functions:Namespaces:fn:BeforePublish:Target"] = "lambda:" + Arn,
        ["Relay:Functions:Namespaces:fn:BeforePublish:Timeout"] = "00:00:10",
        ["Relay:Functions:Namespaces:broken:BeforePublish:Target"] = "lambda:" + FailingArn,
        ["Relay:Functions:Namespaces:broken:BeforePublish:Timeout"] = "00:00:10",
    };

    private async Task InvokeAsync(HttpContext context)
    {
        using var buffer = new MemoryStream();
        await context.Request.Body.CopyToAsync(buffer, context.RequestAborted);
        var body = buffer.ToArray();
        var path = context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpRequestFeature>()!.RawTarget;
        var failure = SigV4Verifier.Verify(context, body, AccessKeyId, SecretAccessKey, "eu-west-1", "lambda")
            ?? (context.Request.Headers["X-Amz-Security-Token"] == SessionToken ? null : "no session token");
        if (failure is not null)
        {
            _invocations.Enqueue((path, failure, null));
            context.Response.StatusCode = 403;
            await context.Response.WriteAsJsonAsync(new { message = failure });
            return;
        }

        var invokeEvent = JsonDocument.Parse(body).RootElement.Clone();
        _invocations.Enqueue((path, null, invokeEvent));
        if (path.Contains("broken", StringComparison.Ordinal))
        {
            // Lambda answers 200 with the error as the payload when the function throws.
            context.Response.Headers["X-Amz-Function-Error"] = "Unhandled";
            await context.Response.WriteAsJsonAsync(new { errorMessage = "boom", errorType = "Exception" });
            return;
        }

        var messages = invokeEvent.GetProperty("messages").EnumerateArray().Select(static m => new { data = m.GetProperty("data").GetString()!.ToUpperInvariant() }).ToArray();
        await context.Response.WriteAsJsonAsync(new { action = "transform", messages });
    }
}

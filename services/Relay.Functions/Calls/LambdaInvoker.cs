using Relay.Functions.Hooks;

namespace Relay.Functions.Calls;

/// <summary>Builds Lambda Invoke API requests (<c>POST /2015-03-31/functions/{name}/invocations</c>).</summary>
internal sealed class LambdaInvoker
{
    /// <summary>The header Lambda sets when the function itself failed (the status is still 200).</summary>
    public const string FunctionErrorHeader = "X-Amz-Function-Error";

    public HttpRequestMessage CreateRequest(HookTarget target, ReadOnlyMemory<byte> body) =>
        throw new NotSupportedException($"lambda targets are not supported yet ({target.Display}, {body.Length} bytes)");
}

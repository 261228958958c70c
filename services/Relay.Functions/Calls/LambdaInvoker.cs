using System.Net.Http.Headers;
using Amazon.Runtime;
using Amazon.Runtime.Internal;
using Amazon.Runtime.Internal.Auth;
using Amazon.Runtime.Internal.Util;
using Microsoft.Extensions.Options;
using Relay.Functions.Hooks;

namespace Relay.Functions.Calls;

/// <summary>
/// Builds Lambda Invoke API requests (<c>POST /2015-03-31/functions/{name}/invocations</c>, a synchronous
/// <c>RequestResponse</c> invocation) signed with SigV4 by AWSSDK.Core's <see cref="AWS4Signer"/>: the SDK composes the
/// URL (the function ARN percent-encoded as one path segment) and signs method, path, headers and the body's SHA-256.
/// No Lambda client package is available, so the request is made here and sent with <see cref="HttpClient"/>.
/// </summary>
internal sealed class LambdaInvoker
{
    /// <summary>The header Lambda sets when the function itself failed (the status is still 200).</summary>
    public const string FunctionErrorHeader = "X-Amz-Function-Error";

    /// <summary>The Invoke API's path, with the function's name (or ARN) as its one resource.</summary>
    private const string InvokePath = "/2015-03-31/functions/{FunctionName}/invocations";

    private static readonly MediaTypeHeaderValue Json = new("application/json");

    private readonly LambdaOptions _options;
    private readonly AWS4Signer _signer = new();
    private readonly SigningConfig _config = new();

    public LambdaInvoker(IOptions<FunctionsOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Value.Lambda;
    }

    /// <summary>The credentials <c>lambda:</c> targets are invoked with: the settings, else the standard AWS variables.</summary>
    public (string? AccessKeyId, string? SecretAccessKey, string? SessionToken) Credentials =>
        (_options.AccessKeyId ?? Environment.GetEnvironmentVariable("AWS_ACCESS_KEY_ID"),
         _options.SecretAccessKey ?? Environment.GetEnvironmentVariable("AWS_SECRET_ACCESS_KEY"),
         _options.SessionToken ?? Environment.GetEnvironmentVariable("AWS_SESSION_TOKEN"));

    public HttpRequestMessage CreateRequest(HookTarget target, ReadOnlyMemory<byte> body)
    {
        ArgumentNullException.ThrowIfNull(target);
        var (accessKeyId, secretAccessKey, sessionToken) = Credentials;
        var request = new DefaultRequest(new InvokeRequest(), "Lambda")
        {
            HttpMethod = "POST",
            Endpoint = new Uri(_options.Endpoint ?? $"https://lambda.{target.Region}.amazonaws.com"),
            ResourcePath = InvokePath,
            Content = body.ToArray(),
            AuthenticationRegion = target.Region,
            OverrideSigningServiceName = "lambda",
        };
        request.AddPathResource("{FunctionName}", target.FunctionArn);
        request.Headers["Content-Type"] = "application/json";
        request.Headers["X-Amz-Invocation-Type"] = "RequestResponse";
        if (!string.IsNullOrEmpty(sessionToken))
        {
            request.Headers["X-Amz-Security-Token"] = sessionToken;
        }

        _signer.Sign(request, _config, new RequestMetrics(), new BasicAWSCredentials(accessKeyId, secretAccessKey));

        var message = new HttpRequestMessage(HttpMethod.Post, AmazonServiceClient.ComposeUrl(request))
        {
            Content = new ByteArrayContent(request.Content),
        };
        message.Content.Headers.ContentType = Json;
        foreach (var (name, value) in request.Headers)
        {
            // Host comes from the URL and Content-Type from the content, with the values that were signed.
            if (!name.Equals("host", StringComparison.OrdinalIgnoreCase) && !name.Equals("Content-Type", StringComparison.OrdinalIgnoreCase))
            {
                message.Headers.TryAddWithoutValidation(name, value);
            }
        }

        return message;
    }

    /// <summary>The SDK's request type; the Invoke call has no request object of its own here.</summary>
    private sealed class InvokeRequest : AmazonWebServiceRequest;

    /// <summary>What the signer asks of a client's configuration; the service and region are set on each request.</summary>
    private sealed class SigningConfig : ClientConfig
    {
        public SigningConfig()
            : base(new DefaultConfigurationProvider([new DefaultConfiguration { Name = DefaultConfigurationMode.Standard }]))
        {
        }

        public override string ServiceVersion => "2015-03-31";

        public override string UserAgent => "relay-functions";

        public override string RegionEndpointServiceName => "lambda";

        public override Amazon.Runtime.Endpoints.Endpoint DetermineServiceOperationEndpoint(Amazon.Runtime.Endpoints.ServiceOperationEndpointParameters parameters) =>
            throw new NotSupportedException("the endpoint is set on each request");
    }
}

namespace Relay.Functions;

/// <summary>Where and as whom <c>lambda:</c> targets are invoked.</summary>
public sealed class LambdaOptions
{
    /// <summary>The Lambda endpoint; unset: <c>https://lambda.{region}.amazonaws.com</c> with the region from the function's ARN.</summary>
    public string? Endpoint { get; set; }

    /// <summary>The access key id; unset: <c>AWS_ACCESS_KEY_ID</c>.</summary>
    public string? AccessKeyId { get; set; }

    /// <summary>The secret key; unset: <c>AWS_SECRET_ACCESS_KEY</c>.</summary>
    public string? SecretAccessKey { get; set; }

    /// <summary>A session token (temporary credentials); unset: <c>AWS_SESSION_TOKEN</c>, if any.</summary>
    public string? SessionToken { get; set; }
}

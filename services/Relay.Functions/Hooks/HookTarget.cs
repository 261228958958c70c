namespace Relay.Functions.Hooks;

/// <summary>Where a hook is called: an HTTP(S) URL, or a Lambda function by ARN (called through the Lambda Invoke API).</summary>
/// <param name="Url">The URL of an HTTP hook.</param>
/// <param name="FunctionArn">The function ARN of a <c>lambda:</c> hook.</param>
/// <param name="Region">The region named in <paramref name="FunctionArn"/>.</param>
internal sealed record HookTarget(Uri? Url, string? FunctionArn, string? Region)
{
    /// <summary>The prefix of a Lambda target.</summary>
    public const string LambdaPrefix = "lambda:";

    /// <summary>How the target reads in logs and metrics.</summary>
    public string Display => Url?.GetLeftPart(UriPartial.Path) ?? LambdaPrefix + FunctionArn;

    /// <summary>Reads a configured target, or says what is wrong with it.</summary>
    public static bool TryParse(string value, out HookTarget? target, out string error)
    {
        target = null;
        error = string.Empty;
        if (value.StartsWith(LambdaPrefix, StringComparison.Ordinal))
        {
            // arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
            var arn = value[LambdaPrefix.Length..];
            var parts = arn.Split(':');
            if (parts.Length is < 7 or > 8 || parts[0] != "arn" || parts[2] != "lambda" || parts[3].Length == 0 || parts[5] != "function" || parts[6].Length == 0)
            {
                error = $"'{value}' is not lambda:<function-arn> (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER])";
                return false;
            }

            target = new HookTarget(null, arn, parts[3]);
            return true;
        }

        if (!Uri.TryCreate(value, UriKind.Absolute, out var url) || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps))
        {
            error = $"'{value}' is neither an http(s) URL nor lambda:<function-arn>";
            return false;
        }

        target = new HookTarget(url, null, null);
        return true;
    }
}

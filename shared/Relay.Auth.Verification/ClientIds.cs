using Relay.Core.Protocol;

namespace Relay.Auth.Verification;

/// <summary>The rule for client ids, wherever they come from (<c>?clientId=</c>, a token's <c>sub</c>, a token request).</summary>
internal static class ClientIds
{
    public const int MaxLength = 128;

    /// <summary>Null when <paramref name="clientId"/> is 1-128 characters without control characters, else the 40000 to answer with.</summary>
    public static RelayError? Validate(string clientId)
    {
        ArgumentNullException.ThrowIfNull(clientId);
        if (clientId.Length is 0 or > MaxLength)
        {
            return RelayError.BadRequest($"clientId must be 1-{MaxLength} characters (got {clientId.Length})");
        }

        foreach (var c in clientId)
        {
            if (char.IsControl(c))
            {
                return RelayError.BadRequest("clientId must not contain control characters");
            }
        }

        return null;
    }
}

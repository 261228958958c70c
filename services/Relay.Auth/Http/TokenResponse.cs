namespace Relay.Auth.Http;

/// <summary>The body of a successful <c>POST /v1/tokens</c>: the JWT and its expiry in Unix milliseconds.</summary>
internal sealed record TokenResponse(string Token, long ExpiresAt);

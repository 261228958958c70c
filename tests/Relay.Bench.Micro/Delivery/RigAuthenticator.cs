using Microsoft.AspNetCore.Http;
using Relay.Auth.Verification;

namespace Relay.Bench.Micro.Delivery;

/// <summary>The rigs' connections are made with a principal already; nothing is ever authenticated.</summary>
internal sealed class RigAuthenticator : IRelayAuthenticator
{
    public AuthResult Authenticate(HttpContext context) => throw new NotSupportedException("the rigs authenticate nothing");

    public AuthResult AuthenticateToken(string token) => throw new NotSupportedException("the rigs authenticate nothing");

    public long KeysVersion => 0;

    public AuthResult Recheck(RelayPrincipal principal) => AuthResult.Success(principal);
}

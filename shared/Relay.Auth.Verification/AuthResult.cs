using System.Diagnostics.CodeAnalysis;
using Relay.Core.Protocol;

namespace Relay.Auth.Verification;

/// <summary>The outcome of checking credentials: a principal, or the protocol error to answer with.</summary>
public readonly record struct AuthResult(RelayPrincipal? Principal, RelayError? Error)
{
    /// <summary>Whether the credentials were accepted.</summary>
    [MemberNotNullWhen(true, nameof(Principal))]
    [MemberNotNullWhen(false, nameof(Error))]
    public bool Succeeded => Principal is not null;

    /// <summary>A successful result.</summary>
    public static AuthResult Success(RelayPrincipal principal) => new(principal, null);

    /// <summary>A failed result.</summary>
    public static AuthResult Fail(int code, string message) => new(null, new RelayError(code, message));

    /// <summary>Why the credentials were refused, for the server's log only: the client gets <see cref="Error"/>, which may say less.</summary>
    internal string? Detail { get; init; }
}

using Microsoft.AspNetCore.Http;
using Relay.Core.Protocol;

namespace Relay.ServiceDefaults;

/// <summary>Shorthands for protocol errors as minimal-API results.</summary>
public static class RelayResults
{
    /// <summary>The HTTP form of <paramref name="error"/>.</summary>
    public static IResult Error(RelayError error) => new RelayErrorResult(error);

    /// <summary>The HTTP form of an error code and message.</summary>
    public static IResult Error(int code, string message) => new RelayErrorResult(new RelayError(code, message));
}

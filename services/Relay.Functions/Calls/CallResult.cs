namespace Relay.Functions.Calls;

/// <summary>What a hook, Lambda function or webhook answered: a body on success, else why not.</summary>
/// <param name="Body">The answer's body (null when the call failed).</param>
/// <param name="Failure">Why the call failed (a status, a timeout, a function error); null on success.</param>
/// <param name="TimedOut">Whether it failed by running past its timeout.</param>
internal readonly record struct CallResult(byte[]? Body, string? Failure, bool TimedOut = false)
{
    public bool Succeeded => Failure is null;

    public static CallResult Failed(string failure, bool timedOut = false) => new(null, failure, timedOut);
}

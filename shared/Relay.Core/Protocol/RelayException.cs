namespace Relay.Core.Protocol;

/// <summary>Carries a <see cref="RelayError"/> out of code that cannot return one.</summary>
public sealed class RelayException : Exception
{
    /// <summary>Creates the exception for an error.</summary>
    public RelayException(RelayError error) : base(error.Message) => Error = error;

    /// <summary>Creates the exception for a code and message.</summary>
    public RelayException(int code, string message) : this(new RelayError(code, message)) { }

    /// <summary>The protocol error.</summary>
    public RelayError Error { get; }
}

namespace Relay.Core.Protocol;

/// <summary>One parsed client request. Payload bytes are copied out of the frame, so the frame buffer can be reused.</summary>
public sealed class ClientRequest
{
    /// <summary>The request type.</summary>
    public RequestType Type { get; set; }

    /// <summary>The <c>type</c> text as sent (for error messages).</summary>
    public string? TypeName { get; set; }

    /// <summary>The raw JSON of <c>ref</c> (a number or a string), echoed in the reply; null when absent.</summary>
    public byte[]? Ref { get; set; }

    /// <summary><c>channel</c>.</summary>
    public string? Channel { get; set; }

    /// <summary>The raw JSON of <c>data</c>; empty when absent.</summary>
    public ReadOnlyMemory<byte> Data { get; set; }

    /// <summary>Whether <c>data</c> was present.</summary>
    public bool HasData { get; set; }

    /// <summary><c>name</c>.</summary>
    public string? Name { get; set; }

    /// <summary><c>id</c> (idempotency key).</summary>
    public string? Id { get; set; }

    /// <summary><c>since.epoch</c>.</summary>
    public string? SinceEpoch { get; set; }

    /// <summary><c>since.seq</c>.</summary>
    public long? SinceSeq { get; set; }

    /// <summary><c>rewind</c>.</summary>
    public int? Rewind { get; set; }

    /// <summary><c>action</c> (presence).</summary>
    public string? Action { get; set; }

    /// <summary><c>limit</c> (history).</summary>
    public int? Limit { get; set; }

    /// <summary><c>before</c> (history).</summary>
    public long? Before { get; set; }

    /// <summary><c>token</c> (auth).</summary>
    public string? Token { get; set; }

    /// <summary><c>traceparent</c> (publish): the client's W3C trace context, as sent; null when absent or not a string.</summary>
    public string? TraceParent { get; set; }

    /// <summary>The first problem found while parsing; the request must be answered with it instead of being run.</summary>
    public RelayError? Error { get; set; }
}

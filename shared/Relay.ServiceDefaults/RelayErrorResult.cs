using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Relay.Core.Protocol;

namespace Relay.ServiceDefaults;

/// <summary>Writes a protocol error as the HTTP API does: its status and <c>{"error":{"code","message","statusCode"}}</c>.</summary>
public sealed class RelayErrorResult(RelayError error) : IResult
{
    /// <summary>The error written.</summary>
    public RelayError Error { get; } = error;

    /// <inheritdoc />
    public Task ExecuteAsync(HttpContext httpContext)
    {
        ArgumentNullException.ThrowIfNull(httpContext);
        return WriteAsync(httpContext.Response, Error);
    }

    /// <summary>Writes <paramref name="error"/> to <paramref name="response"/>.</summary>
    public static async Task WriteAsync(HttpResponse response, RelayError error)
    {
        ArgumentNullException.ThrowIfNull(response);
        ArgumentNullException.ThrowIfNull(error);
        response.StatusCode = error.StatusCode;
        response.ContentType = "application/json";
        var writer = new Utf8JsonWriter(response.BodyWriter);
        await using var disposeWriter = writer.ConfigureAwait(false);
        WriteBody(writer, error);
        await writer.FlushAsync(response.HttpContext.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>Writes the error body object.</summary>
    public static void WriteBody(Utf8JsonWriter writer, RelayError error)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(error);
        writer.WriteStartObject();
        writer.WriteStartObject("error");
        writer.WriteNumber("code", error.Code);
        writer.WriteString("message", error.Message);
        writer.WriteNumber("statusCode", error.StatusCode);
        writer.WriteEndObject();
        writer.WriteEndObject();
    }
}

using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Relay.Functions.Tests;

/// <summary>
/// The test's before-publish hook: what it answers depends on the path (one per namespace) and the message's data.
/// <c>/mod</c> rejects "spam"; <c>/upper</c> upper-cases and renames; <c>/hang</c> never answers "hang"; <c>/junk</c>
/// answers garbage of the kind the data names; <c>/rate</c> appends "!" after a random few milliseconds. Anything else
/// is accepted.
/// </summary>
internal static class HookBehaviour
{
    public static async Task HandleAsync(HttpContext context)
    {
        using var document = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted);
        var root = document.RootElement;
        var messages = root.GetProperty("messages");
        var first = messages[0].GetProperty("data").ValueKind == JsonValueKind.String ? messages[0].GetProperty("data").GetString() : null;
        switch (context.Request.Path.Value)
        {
            case "/mod" when first == "spam":
                await context.Response.WriteAsJsonAsync(new { action = "reject", reason = "spam is not allowed here" });
                return;
            case "/upper":
                await context.Response.WriteAsJsonAsync(new
                {
                    action = "transform",
                    messages = messages.EnumerateArray().Select(static m => new { name = "shout", data = m.GetProperty("data").GetString()!.ToUpperInvariant() }).ToArray(),
                });
                return;
            case "/hang" when first == "hang":
                await Task.Delay(Timeout.Infinite, context.RequestAborted);
                return;
            case "/junk":
                await JunkAsync(context, first);
                return;
            case "/rate":
                await Task.Delay(Random.Shared.Next(0, 4), context.RequestAborted);
                await context.Response.WriteAsJsonAsync(new
                {
                    action = "transform",
                    messages = messages.EnumerateArray().Select(static m => new { data = m.GetProperty("data").GetString() + "!" }).ToArray(),
                });
                return;
            default:
                await context.Response.WriteAsJsonAsync(new { action = "accept" });
                return;
        }
    }

    private static async Task JunkAsync(HttpContext context, string? kind)
    {
        switch (kind)
        {
            case "text":
                context.Response.ContentType = "application/json";
                await context.Response.WriteAsync("this is not json {");
                break;
            case "unknown":
                await context.Response.WriteAsJsonAsync(new { action = "explode" });
                break;
            case "count":
                await context.Response.WriteAsJsonAsync(new { action = "transform", messages = Array.Empty<object>() });
                break;
            case "status":
                context.Response.StatusCode = 500;
                break;
            default:
                await context.Response.WriteAsJsonAsync(new { action = "accept" });
                break;
        }
    }
}

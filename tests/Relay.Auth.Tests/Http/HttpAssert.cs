using System.Net;
using System.Text.Json;

namespace Relay.Auth.Tests.Http;

/// <summary>Checks the HTTP API's error body: the status and <c>{"error":{"code","message","statusCode"}}</c>.</summary>
internal static class HttpAssert
{
    public static async Task<string> ErrorAsync(HttpResponseMessage response, int code)
    {
        var body = await response.Content.ReadAsStringAsync().WaitAsync(AuthServer.Timeout);
        Assert.True((int)response.StatusCode == code / 100, $"expected HTTP {code / 100}, got {(int)response.StatusCode}: {body}");
        using var json = JsonDocument.Parse(body);
        var error = json.RootElement.GetProperty("error");
        Assert.Equal(code, error.GetProperty("code").GetInt32());
        Assert.Equal(code / 100, error.GetProperty("statusCode").GetInt32());
        return error.GetProperty("message").GetString()!;
    }

    public static async Task<JsonElement> OkAsync(HttpResponseMessage response)
    {
        var body = await response.Content.ReadAsStringAsync().WaitAsync(AuthServer.Timeout);
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"expected 200, got {(int)response.StatusCode}: {body}");
        return JsonDocument.Parse(body).RootElement.Clone();
    }
}

using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Relay.Core.Auth;

namespace Relay.Auth.Tests.Http;

public sealed class TokensApiTests(AuthServerFixture fixture) : IClassFixture<AuthServerFixture>
{
    private AuthServer Server => fixture.Server;

    [Fact]
    public async Task PostTokens_BasicKeyWithBody_IssuesEs256TokenWithClaims()
    {
        var now = Server.Clock.GetUtcNow().ToUnixTimeSeconds();
        var response = await SendAsync(AuthServer.RootKey, """{"clientId":"alice","capabilities":{"chat:*":["subscribe","publish"]},"ttlSeconds":120}""");

        var body = await HttpAssert.OkAsync(response);
        var token = body.GetProperty("token").GetString()!;
        Assert.Equal((now + 120) * 1000, body.GetProperty("expiresAt").GetInt64());
        Assert.Equal("no-store", response.Headers.CacheControl?.ToString());

        var header = Jwt.Header(token);
        Assert.Equal("ES256", header.GetProperty("alg").GetString());
        Assert.Equal(await JwksKeyIdAsync(), header.GetProperty("kid").GetString());

        var claims = Jwt.Payload(token);
        Assert.Equal("relay", claims.GetProperty("iss").GetString());
        Assert.Equal("alice", claims.GetProperty("sub").GetString());
        Assert.Equal("test", claims.GetProperty("app").GetString());
        Assert.Equal("test.root", claims.GetProperty("key").GetString());
        Assert.Equal(now, claims.GetProperty("iat").GetInt64());
        Assert.Equal(now + 120, claims.GetProperty("exp").GetInt64());
        var cap = claims.GetProperty("cap");
        Assert.Equal(JsonValueKind.Object, cap.ValueKind);
        Assert.Equal(["subscribe", "publish"], cap.GetProperty("chat:*").EnumerateArray().Select(static o => o.GetString()));
        Assert.False(claims.TryGetProperty("nbf", out _));
    }

    [Fact]
    public async Task PostTokens_NoBody_UsesKeyCapabilitiesAndDefaultTtlWithoutSub()
    {
        var now = Server.Clock.GetUtcNow().ToUnixTimeSeconds();

        var body = await HttpAssert.OkAsync(await SendAsync(AuthServer.ChatKey, body: null));

        var claims = Jwt.Payload(body.GetProperty("token").GetString()!);
        Assert.False(claims.TryGetProperty("sub", out _));
        Assert.Equal(now + RelayTokenIssuingOptions.DefaultDefaultTokenTtlSeconds, claims.GetProperty("exp").GetInt64());
        Assert.Equal("""{"chat:*":["subscribe"]}""", claims.GetProperty("cap").GetRawText());
    }

    [Fact]
    public async Task PostTokens_IssuedToken_AuthenticatesAsItsKeyAndClient()
    {
        var body = await HttpAssert.OkAsync(await SendAsync(AuthServer.RootKey, """{"clientId":"alice","capabilities":{"chat:*":["subscribe"]}}"""));

        var result = Server.Authenticator.AuthenticateToken(body.GetProperty("token").GetString()!);

        Assert.True(result.Succeeded, result.Error?.Message);
        Assert.Equal("test", result.Principal.AppId);
        Assert.Equal("root", result.Principal.KeyId);
        Assert.Equal("alice", result.Principal.ClientId);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(body.GetProperty("expiresAt").GetInt64()), result.Principal.ExpiresAt);
        Assert.True(result.Principal.Capabilities.Allows("chat:lobby", Operations.Subscribe));
        Assert.False(result.Principal.Capabilities.Allows("chat:lobby", Operations.Publish));
        Assert.False(result.Principal.Capabilities.Allows("news", Operations.Subscribe));
    }

    [Fact]
    public async Task PostTokens_IssuedToken_VerifiesWithTheKeyFromJwks()
    {
        var body = await HttpAssert.OkAsync(await SendAsync(AuthServer.RootKey, """{"clientId":"bob"}"""));
        var token = body.GetProperty("token").GetString()!;
        var jwks = new JsonWebKeySet(await Server.Client.GetStringAsync(new Uri(".well-known/jwks.json", UriKind.Relative)).WaitAsync(AuthServer.Timeout));

        var result = await new JsonWebTokenHandler().ValidateTokenAsync(token, new TokenValidationParameters
        {
            IssuerSigningKeys = jwks.GetSigningKeys(),
            ValidIssuer = "relay",
            ValidAlgorithms = ["ES256"],
            ValidateAudience = false,
            LifetimeValidator = (notBefore, expires, _, _) => expires > Server.Clock.GetUtcNow().UtcDateTime,
        }).WaitAsync(AuthServer.Timeout);

        Assert.True(result.IsValid, result.Exception?.Message);
        Assert.Equal("bob", result.Claims["sub"]);
    }

    [Fact]
    public async Task Jwks_Get_ReturnsOneP256SigningKey()
    {
        var response = await Server.Client.GetAsync(new Uri(".well-known/jwks.json", UriKind.Relative)).WaitAsync(AuthServer.Timeout);

        var body = await HttpAssert.OkAsync(response);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var key = Assert.Single(body.GetProperty("keys").EnumerateArray());
        Assert.Equal("EC", key.GetProperty("kty").GetString());
        Assert.Equal("P-256", key.GetProperty("crv").GetString());
        Assert.Equal("sig", key.GetProperty("use").GetString());
        Assert.Equal("ES256", key.GetProperty("alg").GetString());
        Assert.Equal(32, Convert.FromBase64String(Pad(key.GetProperty("x").GetString()!)).Length);
        Assert.Equal(32, Convert.FromBase64String(Pad(key.GetProperty("y").GetString()!)).Length);
        Assert.Equal(new JsonWebKey(key.GetRawText()).ComputeJwkThumbprint(), Base64UrlEncoder.DecodeBytes(key.GetProperty("kid").GetString()!));
    }

    [Fact]
    public async Task PostTokens_NoCredentials_Returns40101()
    {
        var message = await HttpAssert.ErrorAsync(await SendAsync(key: null, body: null), 40101);

        Assert.Contains("Basic", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PostTokens_KeyInQuery_Returns40101()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/tokens?key=" + Uri.EscapeDataString(AuthServer.RootKey));

        var message = await HttpAssert.ErrorAsync(await Server.Client.SendAsync(request).WaitAsync(AuthServer.Timeout), 40101);

        Assert.Contains("?key=", message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("test.root:wrong-secret-0123456789", "invalid key or token")]
    [InlineData("test.nope:test-root-secret-0123456789", "invalid key or token")]
    [InlineData("nope.root:test-root-secret-0123456789", "invalid key or token")]
    [InlineData("test.root", "malformed")]
    public async Task PostTokens_BadKey_Returns40102(string key, string reason)
    {
        var message = await HttpAssert.ErrorAsync(await SendAsync(key, body: null), 40102);

        Assert.Contains(reason, message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PostTokens_BasicNotBase64_Returns40102()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/tokens");
        request.Headers.TryAddWithoutValidation("Authorization", "Basic !!!not-base64");

        await HttpAssert.ErrorAsync(await Server.Client.SendAsync(request).WaitAsync(AuthServer.Timeout), 40102);
    }

    [Fact]
    public async Task PostTokens_BearerToken_Returns40102()
    {
        var issued = await HttpAssert.OkAsync(await SendAsync(AuthServer.RootKey, body: null));
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/tokens");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", issued.GetProperty("token").GetString());

        var message = await HttpAssert.ErrorAsync(await Server.Client.SendAsync(request).WaitAsync(AuthServer.Timeout), 40102);

        Assert.Contains("a token cannot request tokens", message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"capabilities":{"*":["subscribe"]}}""", "'*' asks for subscribe")]
    [InlineData("""{"capabilities":{"chat:*":["subscribe","publish"]}}""", "'chat:*' asks for publish")]
    [InlineData("""{"capabilities":{"chat:lobby":["*"]}}""", "'chat:lobby' asks for publish, presence, history")]
    public async Task PostTokens_CapabilitiesBeyondKey_Returns40300(string body, string reason)
    {
        var message = await HttpAssert.ErrorAsync(await SendAsync(AuthServer.ChatKey, body), 40300);

        Assert.Contains(reason, message, StringComparison.Ordinal);
        Assert.Contains("test.chat", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PostTokens_NarrowerCapabilities_Succeeds()
    {
        await HttpAssert.OkAsync(await SendAsync(AuthServer.ChatKey, """{"capabilities":{"chat:lobby":["subscribe"]}}"""));
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-5")]
    [InlineData("86401")]
    [InlineData("9999999999999")]
    [InlineData("1.5")]
    [InlineData("\"60\"")]
    public async Task PostTokens_BadTtl_Returns40000(string ttl)
    {
        var message = await HttpAssert.ErrorAsync(await SendAsync(AuthServer.RootKey, $$"""{"ttlSeconds":{{ttl}}}"""), 40000);

        Assert.Contains("ttlSeconds", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PostTokens_LongestTtl_Succeeds()
    {
        var now = Server.Clock.GetUtcNow().ToUnixTimeSeconds();

        var body = await HttpAssert.OkAsync(await SendAsync(AuthServer.RootKey, """{"ttlSeconds":86400}"""));

        Assert.Equal((now + 86400) * 1000, body.GetProperty("expiresAt").GetInt64());
    }

    [Theory]
    [InlineData("{")]
    [InlineData("not json")]
    [InlineData("[]")]
    [InlineData("\"token please\"")]
    [InlineData("""{"clientId":5}""")]
    [InlineData("""{"clientId":""}""")]
    [InlineData("""{"clientId":"a\u0001b"}""")]
    [InlineData("""{"capabilities":"*"}""")]
    [InlineData("""{"capabilities":{"*":["fly"]}}""")]
    [InlineData("""{"capabilities":{"*":"subscribe"}}""")]
    [InlineData("""{"ttlSeconds":1,"ttlSeconds":2}""")]
    public async Task PostTokens_MalformedBody_Returns40000(string body)
    {
        await HttpAssert.ErrorAsync(await SendAsync(AuthServer.RootKey, body), 40000);
    }

    [Fact]
    public async Task PostTokens_ClientIdOf129Characters_Returns40000()
    {
        var message = await HttpAssert.ErrorAsync(await SendAsync(AuthServer.RootKey, $$"""{"clientId":"{{new string('a', 129)}}"}"""), 40000);

        Assert.Contains("1-128", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PostTokens_BodyOverLimit_Returns40000()
    {
        var body = $$"""{"clientId":"alice","pad":"{{new string('x', 70_000)}}"}""";

        var message = await HttpAssert.ErrorAsync(await SendAsync(AuthServer.RootKey, body), 40000);

        Assert.Contains("larger than", message, StringComparison.Ordinal);
    }

    private async Task<HttpResponseMessage> SendAsync(string? key, string? body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/tokens");
        if (key is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(key)));
        }

        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, "application/json");
        }

        return await Server.Client.SendAsync(request).WaitAsync(AuthServer.Timeout);
    }

    private async Task<string> JwksKeyIdAsync()
    {
        var jwks = await HttpAssert.OkAsync(await Server.Client.GetAsync(new Uri(".well-known/jwks.json", UriKind.Relative)).WaitAsync(AuthServer.Timeout));
        return jwks.GetProperty("keys")[0].GetProperty("kid").GetString()!;
    }

    private static string Pad(string base64Url)
    {
        var s = base64Url.Replace('-', '+').Replace('_', '/');
        return s + new string('=', (4 - (s.Length % 4)) % 4);
    }
}

using System.Net.Http.Headers;
using System.Text;
using Relay.Auth.Tests.Http;
using Relay.Auth.Verification;
using Relay.Core.Auth;

namespace Relay.Auth.Tests.Tokens;

public sealed class TokenValidationTests : IAsyncLifetime
{
    private AuthServer _server = null!;

    private ManualClock Clock => _server.Clock;

    public async Task InitializeAsync() => _server = await AuthServer.StartAsync().WaitAsync(AuthServer.Timeout);

    public async Task DisposeAsync() => await _server.DisposeAsync().AsTask().WaitAsync(AuthServer.Timeout);

    [Fact]
    public void CustomerHs256_ValidToken_Accepted()
    {
        var claims = Jwt.Claims(Clock, sub: "alice", lifetime: TimeSpan.FromMinutes(5), cap: new Dictionary<string, string[]> { ["chat:*"] = ["subscribe", "publish"] });

        var result = Authenticate(Jwt.Hs256("test.root", AuthServer.RootSecret, claims));

        Assert.True(result.Succeeded, result.Error?.Message);
        Assert.Equal("test", result.Principal.AppId);
        Assert.Equal("root", result.Principal.KeyId);
        Assert.Equal("alice", result.Principal.ClientId);
        Assert.Equal(Clock.GetUtcNow().AddMinutes(5).ToUnixTimeSeconds(), result.Principal.ExpiresAt?.ToUnixTimeSeconds());
        Assert.True(result.Principal.Capabilities.Allows("chat:lobby", Operations.Publish));
        Assert.False(result.Principal.Capabilities.Allows("news", Operations.Subscribe));
    }

    [Fact]
    public void CustomerHs256_NoSub_HasNoClientId()
    {
        var result = Authenticate(Jwt.Hs256("test.root", AuthServer.RootSecret, Jwt.Claims(Clock)));

        Assert.True(result.Succeeded, result.Error?.Message);
        Assert.Null(result.Principal.ClientId);
    }

    [Fact]
    public void CustomerHs256_WrongSecret_Returns40102()
    {
        AssertFails(Jwt.Hs256("test.root", "not-the-secret-0123456789", Jwt.Claims(Clock)), 40102, "invalid key or token");
    }

    [Fact]
    public void CustomerHs256_AnotherKeysSecret_Returns40102()
    {
        AssertFails(Jwt.Hs256("test.root", AuthServer.ChatSecret, Jwt.Claims(Clock)), 40102, "invalid key or token");
    }

    [Fact]
    public void CustomerHs256_TamperedPayload_Returns40102()
    {
        var token = Jwt.Hs256("test.chat", AuthServer.ChatSecret, Jwt.Claims(Clock));

        AssertFails(Jwt.WithPayload(token, Jwt.Claims(Clock, lifetime: TimeSpan.FromDays(365))), 40102, "invalid key or token");
    }

    [Theory]
    [InlineData("test.nope", "invalid key or token")]
    [InlineData("nope.root", "invalid key or token")]
    [InlineData("garbage", "APPID.KEYID")]
    [InlineData(null, "kid")]
    public void CustomerHs256_UnknownOrMissingKid_Returns40102(string? kid, string reason)
    {
        AssertFails(Jwt.Hs256(kid, AuthServer.RootSecret, Jwt.Claims(Clock)), 40102, reason);
    }

    [Fact]
    public void CustomerHs256_AppClaimOfAnotherApp_Returns40102()
    {
        AssertFails(Jwt.Hs256("test.root", AuthServer.RootSecret, Jwt.Claims(Clock, app: "other")), 40102, "app");
    }

    [Fact]
    public void CustomerHs256_MissingApp_Returns40102()
    {
        var claims = Jwt.Claims(Clock);
        claims.Remove("app");

        AssertFails(Jwt.Hs256("test.root", AuthServer.RootSecret, claims), 40102, "no app claim");
    }

    [Fact]
    public void CustomerHs256_MissingExp_Returns40102()
    {
        var claims = Jwt.Claims(Clock);
        claims.Remove("exp");

        AssertFails(Jwt.Hs256("test.root", AuthServer.RootSecret, claims), 40102, "no exp claim");
    }

    [Fact]
    public void CustomerHs256_ExpNotANumber_Returns40102()
    {
        var claims = Jwt.Claims(Clock);
        claims["exp"] = "tomorrow";

        AssertFails(Jwt.Hs256("test.root", AuthServer.RootSecret, claims), 40102, "NumericDate");
    }

    [Fact]
    public void CustomerHs256_MissingCap_Returns40102()
    {
        var claims = Jwt.Claims(Clock);
        claims.Remove("cap");

        AssertFails(Jwt.Hs256("test.root", AuthServer.RootSecret, claims), 40102, "no cap claim");
    }

    [Theory]
    [InlineData("""{"*":["subscribe"]}""", "JSON object")]
    [InlineData("*", "JSON object")]
    public void CustomerHs256_CapAsString_Returns40102(string cap, string reason)
    {
        AssertFails(Jwt.Hs256("test.root", AuthServer.RootSecret, Jwt.Claims(Clock, cap: cap)), 40102, reason);
    }

    [Fact]
    public void CustomerHs256_CapWithUnknownOperation_Returns40102()
    {
        var cap = new Dictionary<string, string[]> { ["*"] = ["fly"] };

        AssertFails(Jwt.Hs256("test.root", AuthServer.RootSecret, Jwt.Claims(Clock, cap: cap)), 40102, "fly");
    }

    [Fact]
    public void CustomerHs256_SubWithControlCharacter_Returns40000()
    {
        AssertFails(Jwt.Hs256("test.root", AuthServer.RootSecret, Jwt.Claims(Clock, sub: "a\u0007b")), 40000, "clientId");
    }

    [Fact]
    public void CustomerHs256_PastExpiryAndSkew_Returns40142()
    {
        var token = Jwt.Hs256("test.root", AuthServer.RootSecret, Jwt.Claims(Clock, lifetime: TimeSpan.FromSeconds(60)));
        Assert.True(Authenticate(token).Succeeded);

        // Within exp + ClockSkewSeconds (30 by default) the token still passes.
        Clock.Advance(TimeSpan.FromSeconds(60 + 30));
        Assert.True(Authenticate(token).Succeeded);

        Clock.Advance(TimeSpan.FromSeconds(1));
        AssertFails(token, 40142, "token expired");
    }

    [Fact]
    public void CustomerHs256_NotBeforeInFuture_Returns40102()
    {
        var claims = Jwt.Claims(Clock);
        claims["nbf"] = Clock.GetUtcNow().AddSeconds(31).ToUnixTimeSeconds();
        var token = Jwt.Hs256("test.root", AuthServer.RootSecret, claims);

        AssertFails(token, 40102, "nbf");

        Clock.Advance(TimeSpan.FromSeconds(1));
        Assert.True(Authenticate(token).Succeeded, "nbf within the clock skew passes");
    }

    [Theory]
    [InlineData("none")]
    [InlineData("HS512")]
    [InlineData("RS256")]
    public void Token_UnsupportedAlg_Returns40102(string alg)
    {
        AssertFails(Jwt.Hs256("test.root", AuthServer.RootSecret, Jwt.Claims(Clock), alg), 40102, "alg");
    }

    [Theory]
    [InlineData("")]
    [InlineData("abc")]
    [InlineData("a.b")]
    [InlineData("a.b.c.d")]
    [InlineData("..")]
    [InlineData("eyJhbGciOiJIUzI1NiJ9.!!!.abc")]
    [InlineData("bm90IGpzb24.e30.")]
    public void Token_Malformed_Returns40102(string token)
    {
        AssertFails(token, 40102, string.Empty);
    }

    [Fact]
    public async Task Token_Hs256WithRelayKid_Returns40102()
    {
        var relayToken = await IssueRelayTokenAsync(AuthServer.RootKey, "{}");
        var relayKid = Jwt.Header(relayToken).GetProperty("kid").GetString();

        AssertFails(Jwt.Hs256(relayKid, AuthServer.RootSecret, Jwt.Claims(Clock)), 40102, "kid");
    }

    [Fact]
    public async Task RelayToken_PayloadSwapped_Returns40102()
    {
        var token = await IssueRelayTokenAsync(AuthServer.ChatKey, "{}");
        var claims = Jwt.Claims(Clock);
        claims["iss"] = "relay";
        claims["key"] = "test.root";

        AssertFails(Jwt.WithPayload(token, claims), 40102, "invalid key or token");
    }

    [Fact]
    public async Task RelayToken_PastExpiry_Returns40142()
    {
        var token = await IssueRelayTokenAsync(AuthServer.RootKey, """{"ttlSeconds":10}""");

        Clock.Advance(TimeSpan.FromSeconds(10 + 31));

        AssertFails(token, 40142, "token expired");
    }

    [Fact]
    public void CustomerHs256_CapabilitiesBeyondKey_ClippedToKey()
    {
        var cap = new Dictionary<string, string[]> { ["*"] = ["subscribe", "publish", "presence", "history"] };

        var result = Authenticate(Jwt.Hs256("test.chat", AuthServer.ChatSecret, Jwt.Claims(Clock, cap: cap)));

        Assert.True(result.Succeeded, result.Error?.Message);
        Assert.True(result.Principal.Capabilities.Allows("chat:x", Operations.Subscribe));
        Assert.False(result.Principal.Capabilities.Allows("chat:x", Operations.Publish));
        Assert.False(result.Principal.Capabilities.Allows("other", Operations.Subscribe));
    }

    private AuthResult Authenticate(string token) => _server.Authenticator.AuthenticateToken(token);

    private void AssertFails(string token, int code, string reason)
    {
        var result = Authenticate(token);

        Assert.False(result.Succeeded);
        Assert.Equal(code, result.Error.Code);
        Assert.Contains(reason, result.Error.Message, StringComparison.Ordinal);
    }

    private async Task<string> IssueRelayTokenAsync(string key, string body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/tokens") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(key)));
        using var response = await _server.Client.SendAsync(request).WaitAsync(AuthServer.Timeout);
        var json = await HttpAssert.OkAsync(response);
        return json.GetProperty("token").GetString()!;
    }
}

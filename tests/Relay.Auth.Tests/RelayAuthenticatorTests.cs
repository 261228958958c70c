using System.Text;
using Microsoft.AspNetCore.Http;
using Relay.Auth.Verification;
using Relay.Core.Auth;

namespace Relay.Auth.Tests;

public sealed class RelayAuthenticatorTests(AuthServerFixture fixture) : IClassFixture<AuthServerFixture>
{
    private AuthServer Server => fixture.Server;

    [Fact]
    public void Authenticate_BasicKey_ReturnsKeyPrincipal()
    {
        var result = Server.Authenticator.Authenticate(Context(authorization: Basic(AuthServer.ChatKey)));

        Assert.True(result.Succeeded, result.Error?.Message);
        Assert.Equal("test", result.Principal.AppId);
        Assert.Equal("chat", result.Principal.KeyId);
        Assert.Null(result.Principal.ClientId);
        Assert.Null(result.Principal.ExpiresAt);
        Assert.Equal(RelayCredentialKind.Key, result.Principal.Credential);
        Assert.True(result.Principal.Capabilities.Allows("chat:a", Operations.Subscribe));
        Assert.False(result.Principal.Capabilities.Allows("chat:a", Operations.Publish));
    }

    [Fact]
    public void Authenticate_BasicKeyWithClientIdQuery_NamesTheClient()
    {
        var result = Server.Authenticator.Authenticate(Context(authorization: Basic(AuthServer.RootKey), query: "?clientId=alice"));

        Assert.True(result.Succeeded, result.Error?.Message);
        Assert.Equal("alice", result.Principal.ClientId);
    }

    [Fact]
    public void Authenticate_KeyQueryWithClientId_ReturnsKeyPrincipal()
    {
        var query = "?key=" + Uri.EscapeDataString(AuthServer.OtherRootKey) + "&clientId=" + Uri.EscapeDataString("bob smith");

        var result = Server.Authenticator.Authenticate(Context(query: query));

        Assert.True(result.Succeeded, result.Error?.Message);
        Assert.Equal("other", result.Principal.AppId);
        Assert.Equal("root", result.Principal.KeyId);
        Assert.Equal("bob smith", result.Principal.ClientId);
        Assert.True(result.Principal.Capabilities.Allows("x", Operations.Publish));
        Assert.False(result.Principal.Capabilities.Allows("x", Operations.History));
    }

    [Fact]
    public void Authenticate_BearerToken_ReturnsTokenPrincipal()
    {
        var token = Jwt.Hs256("test.root", AuthServer.RootSecret, Jwt.Claims(Server.Clock, sub: "carol"));

        var result = Server.Authenticator.Authenticate(Context(authorization: "Bearer " + token, query: "?clientId=ignored"));

        Assert.True(result.Succeeded, result.Error?.Message);
        Assert.Equal("carol", result.Principal.ClientId);
        Assert.NotNull(result.Principal.ExpiresAt);
        Assert.Equal(RelayCredentialKind.Token, result.Principal.Credential);
    }

    [Fact]
    public void Authenticate_TokenQuery_ReturnsTokenPrincipal()
    {
        var token = Jwt.Hs256("other.root", AuthServer.OtherRootSecret, Jwt.Claims(Server.Clock, app: "other", sub: "dave"));

        var result = Server.Authenticator.Authenticate(Context(query: "?token=" + token));

        Assert.True(result.Succeeded, result.Error?.Message);
        Assert.Equal("other", result.Principal.AppId);
        Assert.Equal("dave", result.Principal.ClientId);
    }

    [Fact]
    public void Authenticate_LowercaseSchemes_Accepted()
    {
        var token = Jwt.Hs256("test.root", AuthServer.RootSecret, Jwt.Claims(Server.Clock));

        Assert.True(Server.Authenticator.Authenticate(Context(authorization: "basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes(AuthServer.RootKey)))).Succeeded);
        Assert.True(Server.Authenticator.Authenticate(Context(authorization: "bearer " + token)).Succeeded);
    }

    [Fact]
    public void Authenticate_AuthorizationHeader_TakesPrecedenceOverQuery()
    {
        var result = Server.Authenticator.Authenticate(Context(authorization: Basic(AuthServer.ChatKey), query: "?key=" + Uri.EscapeDataString(AuthServer.RootKey)));

        Assert.True(result.Succeeded, result.Error?.Message);
        Assert.Equal("chat", result.Principal.KeyId);
    }

    [Fact]
    public void Authenticate_NoCredentials_Returns40101()
    {
        var result = Server.Authenticator.Authenticate(Context(query: "?clientId=alice"));

        Assert.False(result.Succeeded);
        Assert.Equal(40101, result.Error.Code);
        Assert.Equal("no credentials: send a key (Basic auth or ?key=) or a token (Bearer or ?token=)", result.Error.Message);
    }

    [Theory]
    [InlineData("Basic " + "dGVzdC5yb290Ondyb25nLXNlY3JldA==", "invalid key or token")] // test.root:wrong-secret
    [InlineData("Basic !!!", "malformed")]
    [InlineData("Basic dGVzdC5yb290", "malformed")] // test.root (no secret)
    [InlineData("Basic", "unsupported")]
    [InlineData("Digest abc", "unsupported")]
    [InlineData("Bearer not-a-jwt", "malformed")]
    public void Authenticate_BadAuthorization_Returns40102(string authorization, string reason)
    {
        var result = Server.Authenticator.Authenticate(Context(authorization: authorization));

        Assert.False(result.Succeeded);
        Assert.Equal(40102, result.Error.Code);
        Assert.Contains(reason, result.Error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("?key=test.root:wrong-secret-0123456789", "invalid key or token")]
    [InlineData("?key=test.root", "malformed")]
    [InlineData("?key=", "malformed")]
    [InlineData("?token=", "empty token")]
    [InlineData("?token=abc", "malformed")]
    public void Authenticate_BadQueryCredentials_Returns40102(string query, string reason)
    {
        var result = Server.Authenticator.Authenticate(Context(query: query));

        Assert.False(result.Succeeded);
        Assert.Equal(40102, result.Error.Code);
        Assert.Contains(reason, result.Error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("?clientId=")]
    [InlineData("?clientId=a%07b")]
    [InlineData("?clientId=a&clientId=b")]
    public void Authenticate_KeyWithBadClientId_Returns40000(string query)
    {
        var result = Server.Authenticator.Authenticate(Context(authorization: Basic(AuthServer.RootKey), query: query));

        Assert.False(result.Succeeded);
        Assert.Equal(40000, result.Error.Code);
    }

    [Fact]
    public void Authenticate_ClientIdOf128Characters_Accepted_And129_Returns40000()
    {
        Assert.True(Server.Authenticator.Authenticate(Context(authorization: Basic(AuthServer.RootKey), query: "?clientId=" + new string('c', 128))).Succeeded);

        var result = Server.Authenticator.Authenticate(Context(authorization: Basic(AuthServer.RootKey), query: "?clientId=" + new string('c', 129)));

        Assert.Equal(40000, result.Error?.Code);
    }

    [Fact]
    public void Authenticate_SecretWithExtraColonPart_Returns40102()
    {
        // The secret is everything after the first ':' (key ids cannot contain one), so a suffix makes it wrong.
        var result = Server.Authenticator.Authenticate(Context(authorization: Basic(AuthServer.RootKey + ":extra")));

        Assert.Equal(40102, result.Error?.Code);
    }

    private static string Basic(string key) => "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes(key));

    private static DefaultHttpContext Context(string? authorization = null, string? query = null)
    {
        var context = new DefaultHttpContext();
        if (authorization is not null)
        {
            context.Request.Headers.Authorization = authorization;
        }

        if (query is not null)
        {
            context.Request.QueryString = new QueryString(query);
        }

        return context;
    }
}

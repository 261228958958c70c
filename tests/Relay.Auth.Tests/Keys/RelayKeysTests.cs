using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Relay.Auth.Verification;
using Relay.Core.Auth;

namespace Relay.Auth.Tests.Keys;

/// <summary>IRelayKeys: a key by name (Pusher's app key) and HMACs with its secret (Pusher's signatures) without the secret leaving.</summary>
public sealed class RelayKeysTests(AuthServerFixture fixture) : IClassFixture<AuthServerFixture>
{
    private IRelayKeys Keys => fixture.Server.Services.GetRequiredService<IRelayKeys>();

    [Fact]
    public void Find_KnownName_ReturnsTheKeysPrincipal()
    {
        var principal = Keys.Find("test.chat");

        Assert.NotNull(principal);
        Assert.Equal(("test", "chat", null), (principal.AppId, principal.KeyId, principal.ClientId));
        Assert.True(principal.Capabilities.Allows("chat:a", Operations.Subscribe));
        Assert.False(principal.Capabilities.Allows("chat:a", Operations.Publish));
        Assert.Null(Keys.Find("test.nobody"));
        Assert.Null(Keys.Find("test.chat:" + AuthServer.ChatSecret));
    }

    [Fact]
    public void TryHmacSha256_KnownName_SignsWithItsSecret()
    {
        var data = Encoding.UTF8.GetBytes("1234.5678:private-chat");
        Span<byte> hash = stackalloc byte[32];

        Assert.True(Keys.TryHmacSha256("test.root", data, hash));
        Assert.Equal(HMACSHA256.HashData(Encoding.UTF8.GetBytes(AuthServer.RootSecret), data), hash.ToArray());
        Assert.False(Keys.TryHmacSha256("test.nobody", data, hash));
    }
}

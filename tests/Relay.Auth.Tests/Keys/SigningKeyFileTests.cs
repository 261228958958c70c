using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using Relay.Auth.Tests.Http;
using Relay.Auth.Verification;

namespace Relay.Auth.Tests.Keys;

public sealed class SigningKeyFileTests : IDisposable
{
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly List<string> _files = [];

    [Fact]
    public async Task SigningKeyFile_SharedByTwoServers_TokensVerifyOnBoth()
    {
        var path = Write(_key.ExportPkcs8PrivateKeyPem());
        await using var first = await AuthServer.StartAsync(settings => settings["Relay:Auth:SigningKeyPath"] = path).WaitAsync(AuthServer.Timeout);
        await using var second = await AuthServer.StartAsync(settings => settings["Relay:Auth:SigningKeyPath"] = path).WaitAsync(AuthServer.Timeout);

        var token = await IssueAsync(first);

        Assert.Equal(await KeyIdAsync(first), await KeyIdAsync(second));
        var result = second.Authenticator.AuthenticateToken(token);
        Assert.True(result.Succeeded, result.Error?.Message);
        Assert.Contains(first.Logs.Entries, static e => e.EventId.Id == 1004);
    }

    [Fact]
    public async Task SigningKeyFile_EcPrivateKeyPem_Accepted()
    {
        var path = Write(_key.ExportECPrivateKeyPem());
        await using var server = await AuthServer.StartAsync(settings => settings["Relay:Auth:SigningKeyPath"] = path).WaitAsync(AuthServer.Timeout);

        var token = await IssueAsync(server);

        Assert.True(server.Authenticator.AuthenticateToken(token).Succeeded);
    }

    [Fact]
    public async Task SigningKeyFile_PublicKeyOnly_VerifiesButDoesNotIssue()
    {
        var privatePath = Write(_key.ExportPkcs8PrivateKeyPem());
        var publicPath = Write(_key.ExportSubjectPublicKeyInfoPem());
        await using var issuer = await AuthServer.StartAsync(settings => settings["Relay:Auth:SigningKeyPath"] = privatePath).WaitAsync(AuthServer.Timeout);
        await using var verifier = await AuthServer.StartAsync(settings => settings["Relay:Auth:SigningKeyPath"] = publicPath).WaitAsync(AuthServer.Timeout);

        var token = await IssueAsync(issuer);

        Assert.True(verifier.Authenticator.AuthenticateToken(token).Succeeded);
        Assert.Equal(await KeyIdAsync(issuer), await KeyIdAsync(verifier));
        using var request = TokenRequest(AuthServer.RootKey);
        await HttpAssert.ErrorAsync(await verifier.Client.SendAsync(request).WaitAsync(AuthServer.Timeout), 50300);
    }

    [Fact]
    public async Task RelayToken_KeyRemovedFromConfiguration_Returns40102()
    {
        var path = Write(_key.ExportPkcs8PrivateKeyPem());
        await using var before = await AuthServer.StartAsync(settings => settings["Relay:Auth:SigningKeyPath"] = path).WaitAsync(AuthServer.Timeout);
        await using var after = await AuthServer.StartAsync(settings =>
        {
            settings["Relay:Auth:SigningKeyPath"] = path;
            settings["Relay:Auth:Apps:0:Keys:0:Id"] = "root2";
        }).WaitAsync(AuthServer.Timeout);

        var result = after.Authenticator.AuthenticateToken(await IssueAsync(before));

        Assert.Equal(40102, result.Error?.Code);
        Assert.Contains("('test.root') no longer exists", result.Error?.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RelayToken_FromAnotherSigningKey_Returns40102()
    {
        await using var first = await AuthServer.StartAsync().WaitAsync(AuthServer.Timeout);
        await using var second = await AuthServer.StartAsync().WaitAsync(AuthServer.Timeout);

        var result = second.Authenticator.AuthenticateToken(await IssueAsync(first));

        Assert.Equal(40102, result.Error?.Code);
        Assert.Contains("jwks.json", result.Error?.Message, StringComparison.Ordinal);
    }

    public void Dispose()
    {
        _key.Dispose();
        foreach (var file in _files)
        {
            File.Delete(file);
        }
    }

    private string Write(string pem)
    {
        var path = RelayAuthOptionsValidatorTests.WritePem(pem);
        _files.Add(path);
        return path;
    }

    private static HttpRequestMessage TokenRequest(string key)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "v1/tokens");
        request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(key)));
        return request;
    }

    private static async Task<string> IssueAsync(AuthServer server)
    {
        using var request = TokenRequest(AuthServer.RootKey);
        var body = await HttpAssert.OkAsync(await server.Client.SendAsync(request).WaitAsync(AuthServer.Timeout));
        return body.GetProperty("token").GetString()!;
    }

    private static async Task<string> KeyIdAsync(AuthServer server)
    {
        var jwks = await HttpAssert.OkAsync(await server.Client.GetAsync(new Uri(".well-known/jwks.json", UriKind.Relative)).WaitAsync(AuthServer.Timeout));
        return jwks.GetProperty("keys")[0].GetProperty("kid").GetString()!;
    }
}

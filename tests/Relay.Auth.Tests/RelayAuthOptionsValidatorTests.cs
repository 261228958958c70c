using System.Security.Cryptography;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Auth.Verification;

namespace Relay.Auth.Tests;

public sealed class RelayAuthOptionsValidatorTests
{
    public static TheoryData<string, string?, string> BadSettings => new()
    {
        { "Relay:Auth:Apps:0:Keys:0:Secret", "short-secret", "Relay:Auth:Apps:0:Keys:0:Secret has 12 characters; HS256 needs at least 128 bits" },
        { "Relay:Auth:Apps:0:Keys:0:Secret", null, "Relay:Auth:Apps:0:Keys:0:Secret is empty" },
        { "Relay:Auth:Apps:1:Id", "test", "Relay:Auth:Apps:1:Id 'test' is used by another app" },
        { "Relay:Auth:Apps:0:Keys:1:Id", "root", "Relay:Auth:Apps:0:Keys:1:Id 'root' is used by another key of app 'test'" },
        { "Relay:Auth:Apps:0:Id", "my app", "Relay:Auth:Apps:0:Id 'my app' is not a valid app id" },
        { "Relay:Auth:Apps:0:Id", new string('a', 65), "is not a valid app id: use 1-64 characters" },
        { "Relay:Auth:Apps:0:Keys:0:Id", "root.key", "Relay:Auth:Apps:0:Keys:0:Id 'root.key' is not a valid key id" },
        { "Relay:Auth:Apps:0:Keys:1:Capabilities:0:Operations:0", "fly", "Relay:Auth:Apps:0:Keys:1:Capabilities:0:Operations:0 'fly' is not an operation" },
        { "Relay:Auth:Apps:0:Keys:1:Capabilities:0:Channel", null, "Relay:Auth:Apps:0:Keys:1:Capabilities:0:Channel must be a channel glob" },
        { "Relay:Auth:Apps:0:Keys:1:Capabilities:1:Channel", "chat:*", "Relay:Auth:Apps:0:Keys:1:Capabilities:1:Channel 'chat:*' is listed twice" },
        { "Relay:Auth:DefaultTokenTtlSeconds", "90000", "Relay:Auth:DefaultTokenTtlSeconds is 90000; it must be from 1 to MaxTokenTtlSeconds (86400)" },
        { "Relay:Auth:MaxTokenTtlSeconds", "0", "Relay:Auth:MaxTokenTtlSeconds is 0" },
        { "Relay:Auth:ClockSkewSeconds", "-1", "Relay:Auth:ClockSkewSeconds is -1" },
        { "Relay:Auth:SigningKeyPath", "/nonexistent/relay-signing.pem", "Relay:Auth:SigningKeyPath '/nonexistent/relay-signing.pem' cannot be read" },
    };

    [Theory]
    [MemberData(nameof(BadSettings))]
    public async Task Start_BadSetting_ThrowsNamingTheSetting(string key, string? value, string expected)
    {
        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => AuthServer.StartAsync(settings =>
        {
            settings[key] = value;
            if (key.EndsWith(":Capabilities:1:Channel", StringComparison.Ordinal))
            {
                settings[key.Replace(":Channel", ":Operations:0", StringComparison.Ordinal)] = "history";
            }
        })).WaitAsync(AuthServer.Timeout);

        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_KeyWithoutCapabilities_Throws()
    {
        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => AuthServer.StartAsync(settings =>
        {
            settings["Relay:Auth:Apps:0:Keys:1:Capabilities:0:Channel"] = null;
            settings["Relay:Auth:Apps:0:Keys:1:Capabilities:0:Operations:0"] = null;
        })).WaitAsync(AuthServer.Timeout);

        Assert.Contains("Relay:Auth:Apps:0:Keys:1:Capabilities is empty", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Start_SeveralProblems_ReportsEach()
    {
        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => AuthServer.StartAsync(settings =>
        {
            settings["Relay:Auth:Apps:0:Keys:0:Secret"] = "short";
            settings["Relay:Auth:Apps:1:Id"] = "bad/id";
        })).WaitAsync(AuthServer.Timeout);

        Assert.Equal(2, ex.Failures.Count());
    }

    [Fact]
    public async Task Start_SigningKeyOnAnotherCurve_ThrowsNamingP256()
    {
        using var p384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        var path = WritePem(p384.ExportPkcs8PrivateKeyPem());
        try
        {
            var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => AuthServer.StartAsync(settings => settings["Relay:Auth:SigningKeyPath"] = path))
                .WaitAsync(AuthServer.Timeout);

            Assert.Contains("ES256 needs P-256", ex.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Start_SigningKeyFileNotPem_Throws()
    {
        var path = WritePem("not a key");
        try
        {
            var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => AuthServer.StartAsync(settings => settings["Relay:Auth:SigningKeyPath"] = path))
                .WaitAsync(AuthServer.Timeout);

            Assert.Contains("is not an unencrypted PEM EC key", ex.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Start_NoApps_StartsAndWarns()
    {
        await using var server = await AuthServer.StartAsync(settings =>
        {
            foreach (var key in settings.Keys.ToList())
            {
                settings[key] = null;
            }
        }).WaitAsync(AuthServer.Timeout);

        Assert.Contains(server.Logs.Entries, static e => e.Level == LogLevel.Warning && e.EventId.Id == 1001);
        Assert.Equal(40102, server.Authenticator.Authenticate(new Microsoft.AspNetCore.Http.DefaultHttpContext
        {
            Request = { QueryString = new Microsoft.AspNetCore.Http.QueryString("?key=test.root:" + AuthServer.RootSecret) },
        }).Error?.Code);
    }

    [Fact]
    public async Task Start_NoSigningKeyPath_WarnsThatTokensDieWithTheProcess()
    {
        await using var server = await AuthServer.StartAsync().WaitAsync(AuthServer.Timeout);

        var warning = Assert.Single(server.Logs.Entries, static e => e.EventId.Id == 1003);
        Assert.Equal(LogLevel.Warning, warning.Level);
        Assert.Contains("will not verify after a restart", warning.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AddRelayAuth_CalledTwice_RegistersOnce()
    {
        var services = new ServiceCollection();

        services.AddRelayAuth().AddRelayAuth();

        Assert.Single(services, static d => d.ServiceType == typeof(IRelayAuthenticator));
        Assert.Single(services, static d => d.ServiceType == typeof(IValidateOptions<RelayAuthOptions>));
        Assert.Single(services, static d => d.ServiceType == typeof(TimeProvider));
    }

    internal static string WritePem(string pem)
    {
        var path = Path.Combine(Path.GetTempPath(), $"relay-auth-{Guid.NewGuid():N}.pem");
        File.WriteAllText(path, pem);
        return path;
    }
}

using System.Text.Json;
using Relay.Ingress;

namespace Relay.Services.Tests;

/// <summary>
/// Ingress checks credentials but never issues tokens (docs/architecture.md, layout): it ships the checking half of auth
/// (shared/Relay.Auth.Verification) and not services/Relay.Auth, whose private signing key and JWT signing library stay
/// with the auth service. Read from what the build of services/Relay.Ingress produced: its deps.json and its assembly.
/// </summary>
public sealed class IngressDependenciesTests
{
    private const string Issuer = "Relay.Auth";
    private const string Verification = "Relay.Auth.Verification";
    private const string JwtSigning = "Microsoft.IdentityModel.JsonWebTokens";

    [Fact]
    public void IngressDepsJson_ListsVerificationOnly_NotTheIssuer()
    {
        var path = IngressDepsJsonPath();
        Assert.True(File.Exists(path), $"{path} is missing: build services/Relay.Ingress in the configuration these tests run in");
        using var deps = JsonDocument.Parse(File.ReadAllBytes(path));

        // "libraries" names every package and project the node ships, as "Name/Version".
        var libraries = deps.RootElement.GetProperty("libraries").EnumerateObject().Select(static library => library.Name.Split('/')[0]).ToList();

        Assert.Contains(Verification, libraries);
        Assert.DoesNotContain(Issuer, libraries);
        Assert.DoesNotContain(JwtSigning, libraries);
    }

    [Fact]
    public void IngressAssembly_ReferencesVerification_NotTheIssuer()
    {
        var references = typeof(IngressNode).Assembly.GetReferencedAssemblies().Select(static name => name.Name).ToList();

        Assert.Contains(Verification, references);
        Assert.DoesNotContain(Issuer, references);
    }

    /// <summary>services/Relay.Ingress/bin/CONFIGURATION/TFM/Relay.Ingress.deps.json, in the configuration of this test build.</summary>
    private static string IngressDepsJsonPath()
    {
        var output = AppContext.BaseDirectory;
        var root = new DirectoryInfo(output);
        for (var depth = 0; root is not null && depth < 10 && !File.Exists(Path.Combine(root.FullName, "Relay.Cloud.sln")); depth++)
        {
            root = root.Parent;
        }

        Assert.True(root is not null && File.Exists(Path.Combine(root.FullName, "Relay.Cloud.sln")), $"no Relay.Cloud.sln above {output}");
        var configurationAndFramework = Path.GetRelativePath(Path.Combine(root.FullName, "tests", "Relay.Services.Tests", "bin"), output);
        return Path.Combine(root.FullName, "services", "Relay.Ingress", "bin", configurationAndFramework, "Relay.Ingress.deps.json");
    }
}

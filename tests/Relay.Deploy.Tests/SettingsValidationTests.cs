using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;
using Relay.Standalone;
using YamlDotNet.RepresentationModel;

namespace Relay.Deploy.Tests;

/// <summary>
/// The settings each Deployment gets in each overlay pass Relay's own start-up validation: the environment (values,
/// the overlay's generated ConfigMap entries, a placeholder per Secret) is bound and every options class's
/// validators run, as at start-up.
/// </summary>
public sealed class SettingsValidationTests
{
    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (var overlay in new[] { "dev", "prod" })
        {
            foreach (var deployment in Manifests.Base.OfKind("Deployment").Where(static d => d.Name().StartsWith("relay-", StringComparison.Ordinal)))
            {
                data.Add(overlay, deployment.Name());
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void DeploymentSettings_PassRelaysStartupValidation(string overlay, string deployment)
    {
        var settings = EnvironmentOf(overlay, deployment);
        Assert.Contains(settings.Keys, static k => k.StartsWith("Relay:", StringComparison.Ordinal));
        var errors = Validate(settings);
        Assert.True(errors.Count == 0, $"{deployment} in {overlay}: " + string.Join("; ", errors));
    }

    [Fact]
    public void Validation_RefusesRedisConfigurationWithTlsBesideIt()
    {
        // What the manifests first set (a connection string and Tls/Password beside it): Relay refuses to start.
        var errors = Validate(new Dictionary<string, string?>
        {
            ["Relay:Bus"] = "redis",
            ["Relay:Redis:Configuration"] = "redis.example:6379",
            ["Relay:Redis:Tls"] = "true",
        });
        Assert.Contains(errors, static e => e.Contains("Relay:Redis:Configuration and the older", StringComparison.Ordinal));
    }

    private static List<string> Validate(Dictionary<string, string?> settings)
    {
        try
        {
            return ValidateEach(settings);
        }
        catch (OptionsValidationException invalid)
        {
            return [.. invalid.Failures];
        }
    }

    private static List<string> ValidateEach(Dictionary<string, string?> settings)
    {
        using var app = StandaloneHost.Build(StandaloneHost.CreateBuilder([], b => b.Configuration.AddInMemoryCollection(settings)));
        var errors = new List<string>();
        foreach (var type in RelaySettings.Sections.SelectMany(static s => s).Distinct())
        {
            var options = app.Services.GetService(typeof(IOptions<>).MakeGenericType(type));
            try
            {
                _ = options?.GetType().GetProperty("Value")!.GetValue(options);
            }
            catch (System.Reflection.TargetInvocationException e) when (e.InnerException is OptionsValidationException invalid)
            {
                errors.AddRange(invalid.Failures);
            }
        }

        return errors;
    }

    private static readonly Lazy<string> SigningKeyFile = new(static () =>
    {
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var path = Path.Combine(Path.GetTempPath(), $"relay-deploy-signing-key-{Environment.ProcessId}.pem");
        File.WriteAllText(path, key.ExportPkcs8PrivateKeyPem());
        return path;
    });

    /// <summary>The deployment's environment in the overlay, as configuration keys (Relay__A__B is Relay:A:B).</summary>
    private static Dictionary<string, string?> EnvironmentOf(string overlay, string name)
    {
        var folder = Path.Combine(Manifests.Folder, "overlays", overlay);
        var kustomization = Yaml.Load(Path.Combine(folder, "kustomization.yaml"));
        var generated = kustomization.Items("configMapGenerator").Concat(kustomization.Items("secretGenerator"))
            .SelectMany(static g => g.Items("literals").Select(l => ((YamlScalarNode)l).Value!.Split('=', 2)).Select(kv => ((g.Text("name")!, kv[0]), kv[1])))
            .ToDictionary(static kv => kv.Item1, static kv => kv.Item2);
        var external = overlay == "prod" ? new HashSet<string> { "relay-app-keys", "relay-redis", "relay-signing-key" } : [];

        var env = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        var documents = Manifests.Base.OfKind("Deployment").Concat(Manifests.Documents(folder).OfKind("Deployment")).Where(d => d.Name() == name);
        foreach (var variable in documents.SelectMany(static d => d.Containers()).SelectMany(static c => c.Items("env")))
        {
            var key = variable.Text("name")!;
            string? value = variable.Text("value");
            var from = variable.Get("valueFrom");
            if (from is not null)
            {
                var reference = from.Get("configMapKeyRef") ?? from.Get("secretKeyRef");
                if (reference is not null)
                {
                    var id = (reference.Text("name")!, reference.Text("key")!);
                    value = generated.TryGetValue(id, out var literal) ? literal
                        : external.Contains(id.Item1) ? "from-secrets-manager"
                        : reference.Text("optional") == "true" ? null
                        : throw new InvalidDataException($"{name} in {overlay}: {key} reads {id}, which the overlay does not generate");
                }
                else
                {
                    value = "pod-name"; // fieldRef
                }
            }

            if (value is null)
            {
                env.Remove(key.Replace("__", ":", StringComparison.Ordinal));
                continue;
            }

            // A file the pod mounts from a Secret: here, a real key of the kind the Secret holds.
            if (key == "Relay__Auth__SigningKeyPath")
            {
                value = SigningKeyFile.Value;
            }

            env[key.Replace("__", ":", StringComparison.Ordinal)] = value;
        }

        return env;
    }
}

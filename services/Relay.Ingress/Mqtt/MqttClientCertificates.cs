using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Relay.ServiceDefaults.Tls;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// The check of a client certificate on MQTT over TLS: its chain must end at one of the configured authorities
/// (<c>Relay:Mqtt:ClientCertificates:CaPath</c>, loaded once at start) and allow client authentication; its subject's
/// common name then names the key the connection is (<c>Relay:Mqtt:ClientCertificates:Keys</c>).
/// </summary>
internal sealed class MqttClientCertificates
{
    private static readonly Oid ClientAuthentication = new("1.3.6.1.5.5.7.3.2");

    private readonly X509Certificate2Collection _authorities;
    private readonly Dictionary<string, string> _keys;

    public MqttClientCertificates(MqttClientCertificateOptions options)
    {
        Required = options.Required;
        _keys = new Dictionary<string, string>(options.Keys, StringComparer.Ordinal);
        _authorities = LoadAuthorities(options.CaPath!);
    }

    /// <summary>The authorities in <paramref name="path"/>; an <see cref="InvalidOperationException"/> names the setting and says what to fix.</summary>
    public static X509Certificate2Collection LoadAuthorities(string path) =>
        CertificateFiles.LoadAuthorities(path, "Relay:Mqtt:ClientCertificates:CaPath", "the authorities that issue device certificates");

    public bool Required { get; }

    /// <summary>Whether <paramref name="certificate"/> chains to a configured authority and is for client authentication.</summary>
    public bool IsValid(X509Certificate2 certificate)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(_authorities);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.ApplicationPolicy.Add(ClientAuthentication);
        return chain.Build(certificate);
    }

    /// <summary>The key a valid certificate's subject common name maps to, and the name (for the refusal when it maps to none).</summary>
    public (string? Key, string CommonName) KeyOf(X509Certificate2 certificate)
    {
        var name = certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
        return (_keys.GetValueOrDefault(name), name);
    }
}

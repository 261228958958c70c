using System.Collections.Frozen;
using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.Options;
using Relay.Core.Auth;
using Relay.Core.Protocol;

namespace Relay.Auth.Keys;

/// <summary>Every configured key by <c>APPID.KEYID</c>, parsed once at start; lookups take a span and allocate nothing.</summary>
internal sealed class KeyStore
{
    private readonly FrozenDictionary<string, ApiKey> _keys;
    private readonly FrozenDictionary<string, ApiKey>.AlternateLookup<ReadOnlySpan<char>> _byName;

    public KeyStore(IOptions<RelayAuthOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var keys = new Dictionary<string, ApiKey>(StringComparer.Ordinal);
        var apps = options.Value.Apps;
        foreach (var app in apps)
        {
            foreach (var key in app.Keys)
            {
                var apiKey = new ApiKey(app.Id, key.Id, key.Secret, ToCapabilities(key));
                keys.Add(apiKey.Name, apiKey);
            }
        }

        _keys = keys.ToFrozenDictionary(StringComparer.Ordinal);
        _byName = _keys.GetAlternateLookup<ReadOnlySpan<char>>();
        AppCount = apps.Count;
    }

    public int AppCount { get; }

    public int KeyCount => _keys.Count;

    public bool TryGet(ReadOnlySpan<char> name, [NotNullWhen(true)] out ApiKey? key) => _byName.TryGetValue(name, out key);

    /// <summary>Checks <c>APPID.KEYID:SECRET</c>; null on success, else the 40102 to answer with.</summary>
    public RelayError? Authenticate(ReadOnlySpan<char> credentials, out ApiKey? key)
    {
        key = null;
        var colon = credentials.IndexOf(':');
        if (colon <= 0)
        {
            return new RelayError(ErrorCodes.InvalidCredentials, "malformed key: expected APPID.KEYID:SECRET");
        }

        var name = credentials[..colon];
        if (!TryGet(name, out var found))
        {
            return new RelayError(ErrorCodes.InvalidCredentials, IsWellFormedName(name)
                ? $"unknown key '{name}'"
                : "malformed key: expected APPID.KEYID:SECRET");
        }

        if (!found.SecretMatches(credentials[(colon + 1)..]))
        {
            return new RelayError(ErrorCodes.InvalidCredentials, $"wrong secret for key '{found.Name}'");
        }

        key = found;
        return null;
    }

    /// <summary>Whether <paramref name="name"/> looks like <c>APPID.KEYID</c>, so it is safe to echo in a message.</summary>
    public static bool IsWellFormedName(ReadOnlySpan<char> name)
    {
        var dot = name.IndexOf('.');
        return dot > 0 && RelayAuthOptionsValidator.IsValidId(name[..dot]) && RelayAuthOptionsValidator.IsValidId(name[(dot + 1)..]);
    }

    /// <summary>The capabilities of a validated key's configuration.</summary>
    public static Capabilities ToCapabilities(RelayKeyOptions key)
    {
        ArgumentNullException.ThrowIfNull(key);
        var entries = new List<KeyValuePair<string, Operations>>(key.Capabilities.Count);
        foreach (var capability in key.Capabilities)
        {
            var operations = Operations.None;
            foreach (var name in capability.Operations)
            {
                operations |= Capabilities.ParseOperation(name)
                    ?? throw new InvalidOperationException($"unknown operation '{name}' (the options validator should have refused it)");
            }

            entries.Add(new(capability.Channel, operations));
        }

        return Capabilities.From(entries);
    }
}

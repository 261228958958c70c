using System.Collections.Frozen;
using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;
using Microsoft.Extensions.Options;
using Relay.Core.Auth;
using Relay.Core.Protocol;

namespace Relay.Auth.Verification.Keys;

/// <summary>
/// Every key by <c>APPID.KEYID</c>, parsed once; lookups take a span and allocate nothing. The keys come from
/// configuration, or (<c>Relay:Auth:KeySource=redis</c>) from the auth service through Redis, when the whole set is
/// replaced at once. With them: the public keys of other Relay signers whose tokens this node accepts.
/// </summary>
internal sealed class KeyStore
{
    /// <summary>What every refused key or token is told: whether an app or key exists is not for the caller to learn.</summary>
    public const string InvalidKeyOrToken = "invalid key or token";

    private readonly Lock _replacing = new();
    private volatile Snapshot _current;
    private long _version;
    private volatile FrozenDictionary<string, ECDsa> _peerSigningKeys = FrozenDictionary<string, ECDsa>.Empty;

    public KeyStore(IOptions<RelayAuthOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _current = new Snapshot(FromOptions(options.Value), options.Value.Apps.Count);
    }

    /// <summary>The keys of validated options.</summary>
    public static IEnumerable<ApiKey> FromOptions(RelayAuthOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Apps.SelectMany(static app => app.Keys.Select(key => new ApiKey(app.Id, key.Id, key.Secret, ToCapabilities(key))));
    }

    public int AppCount => _current.AppCount;

    public int KeyCount => _current.Keys.Count;

    /// <summary>Every key, for publishing.</summary>
    public IReadOnlyCollection<ApiKey> All => _current.Keys.Values;

    public bool TryGet(ReadOnlySpan<char> name, [NotNullWhen(true)] out ApiKey? key) => _current.ByName.TryGetValue(name, out key);

    /// <summary>
    /// A number that moves whenever a key is added, removed or changed; loading the same keys again leaves it (and every
    /// key object) as it was, so connections are checked again only when something changed.
    /// </summary>
    public long Version => Interlocked.Read(ref _version);

    /// <summary>
    /// Replaces every key at once (a key missing from <paramref name="keys"/> is revoked). A key that did not change keeps
    /// its object; whether anything changed is returned.
    /// </summary>
    public bool Replace(IEnumerable<ApiKey> keys)
    {
        ArgumentNullException.ThrowIfNull(keys);
        lock (_replacing)
        {
            var current = _current;
            var list = new List<ApiKey>();
            var changed = false;
            foreach (var key in keys)
            {
                if (current.Keys.TryGetValue(key.Name, out var existing) && existing.SameAs(key))
                {
                    list.Add(existing);
                }
                else
                {
                    list.Add(key);
                    changed = true;
                }
            }

            if (!changed && list.Count == current.Keys.Count)
            {
                return false;
            }

            _current = new Snapshot(list, list.Select(static k => k.AppId).Distinct(StringComparer.Ordinal).Count());
            Interlocked.Increment(ref _version);
            return true;
        }
    }

    /// <summary>Replaces the public keys (by JWKS kid) of the other Relay signers this node trusts.</summary>
    public void ReplacePeerSigningKeys(IReadOnlyDictionary<string, ECDsa> keys) =>
        _peerSigningKeys = keys.ToFrozenDictionary(StringComparer.Ordinal);

    public bool TryGetPeerSigningKey(string kid, [NotNullWhen(true)] out ECDsa? key) => _peerSigningKeys.TryGetValue(kid, out key);

    private sealed class Snapshot
    {
        public Snapshot(IEnumerable<ApiKey> keys, int appCount)
        {
            var byName = new Dictionary<string, ApiKey>(StringComparer.Ordinal);
            foreach (var key in keys)
            {
                byName.Add(key.Name, key);
            }

            Keys = byName.ToFrozenDictionary(StringComparer.Ordinal);
            ByName = Keys.GetAlternateLookup<ReadOnlySpan<char>>();
            AppCount = appCount;
        }

        public FrozenDictionary<string, ApiKey> Keys { get; }

        public FrozenDictionary<string, ApiKey>.AlternateLookup<ReadOnlySpan<char>> ByName { get; }

        public int AppCount { get; }
    }

    /// <summary>
    /// Checks <c>APPID.KEYID:SECRET</c>; null on success, else the 40102 to answer with. An unknown key and a wrong secret
    /// get the same answer (and the same hashing); <paramref name="detail"/> says which, for the server's log only.
    /// </summary>
    public RelayError? Authenticate(ReadOnlySpan<char> credentials, out ApiKey? key, out string? detail)
    {
        key = null;
        var colon = credentials.IndexOf(':');
        if (colon <= 0)
        {
            detail = null;
            return new RelayError(ErrorCodes.InvalidCredentials, "malformed key: expected APPID.KEYID:SECRET");
        }

        var name = credentials[..colon];
        if (!TryGet(name, out var found))
        {
            if (!IsWellFormedName(name))
            {
                detail = null;
                return new RelayError(ErrorCodes.InvalidCredentials, "malformed key: expected APPID.KEYID:SECRET");
            }

            _ = ApiKey.Nobody.SecretMatches(credentials[(colon + 1)..]);
            detail = $"unknown key '{name}'";
            return InvalidCredentials;
        }

        if (!found.SecretMatches(credentials[(colon + 1)..]))
        {
            detail = $"wrong secret for key '{found.Name}'";
            return InvalidCredentials;
        }

        key = found;
        detail = null;
        return null;
    }

    /// <summary>The one 40102 for credentials that name a key: unknown, wrong secret, bad signature.</summary>
    public static RelayError InvalidCredentials { get; } = new(ErrorCodes.InvalidCredentials, InvalidKeyOrToken);

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

using Relay.Core.Auth;

namespace Relay.Auth.Verification.Keys;

/// <summary>
/// What a principal's access rests on, so a connection can be checked again when keys change: the key as it was when the
/// credentials were checked, the capabilities a token asked for (null for the key itself), and whether the credentials
/// were proven with the key's secret (the key itself, or an HS256 token) rather than by Relay's signature.
/// </summary>
internal sealed record KeyGrant(ApiKey Key, Capabilities? Requested, bool ProvenBySecret);

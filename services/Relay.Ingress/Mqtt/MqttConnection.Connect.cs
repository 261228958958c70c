using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Relay.Auth.Verification;
using Relay.Core.Protocol;
using Relay.Ingress.Mqtt.Codec;
using Relay.Ingress.Realtime;

namespace Relay.Ingress.Mqtt;

/// <summary>
/// CONNECT: the credentials are a key (user name = key name <c>APPID.KEYID</c>, password = its secret) or a token (user
/// name <c>token</c>, password = the JWT), checked as the WebSocket's <c>?key=</c> and <c>?token=</c> are; the app is the
/// key's. With a key the MQTT client id is the Relay client id (as <c>?clientId=</c>); with a token it is the token's.
/// </summary>
internal sealed partial class MqttConnection
{
    /// <summary>The user name that says the password is a token (JWT), not a key's secret.</summary>
    public const string TokenUserName = "token";

    private ValueTask ConnectAsync(MqttConnect connect)
    {
        _level = connect.ProtocolLevel;
        if (RefusedAtAccept is { } refusedAtAccept)
        {
            return Refuse(MqttReasonCodes.V3ServerUnavailable, MqttReasonCodes.QuotaExceeded, refusedAtAccept);
        }

        var v5 = V5;
        var clientId = connect.ClientId;
        string? assigned = null;
        if (clientId.Length == 0)
        {
            // MQTT 3.1.1 §3.1.3.1: an empty id is only for a clean session; MQTT 5 assigns one whatever the session.
            if (!v5 && !connect.CleanSession)
            {
                return Refuse(MqttReasonCodes.V3IdentifierRejected, MqttReasonCodes.ClientIdentifierNotValid, "an empty client id needs a clean session");
            }

            clientId = assigned = "auto-" + Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8));
        }

        var auth = Authenticate(connect, clientId);
        if (!auth.Succeeded)
        {
            LogRefused(Logger, ConnectionId, auth.Error.Code);
            return auth.Error.Code == ErrorCodes.BadRequest
                ? Refuse(MqttReasonCodes.V3IdentifierRejected, MqttReasonCodes.ClientIdentifierNotValid, auth.Error.Message)
                : auth.Error.Code == ErrorCodes.NoCredentials
                    ? Refuse(MqttReasonCodes.V3NotAuthorized, MqttReasonCodes.NotAuthorized, auth.Error.Message)
                    : Refuse(MqttReasonCodes.V3BadUserNameOrPassword, MqttReasonCodes.BadUserNameOrPassword, auth.Error.Message);
        }

        if (connect.HasWill && !Relay.Core.Channels.ChannelName.IsValidTopicName(connect.WillTopic, out var willError))
        {
            return Refuse(MqttReasonCodes.V3NotAuthorized, MqttReasonCodes.TopicNameInvalid, $"will topic: {willError}");
        }

        // The app's connection limits; across the cluster that is a round trip to the bus's counts.
        var opening = Node.AppLimits.TryOpenAsync(auth.Principal.AppId, Node.Stopping);
        return opening.IsCompletedSuccessfully
            ? Admit(opening.Result, connect, auth.Principal, clientId, assigned)
            : AdmitLaterAsync(opening, connect, auth.Principal, clientId, assigned);
    }

    private async ValueTask AdmitLaterAsync(ValueTask<RelayError?> opening, MqttConnect connect, RelayPrincipal principal, string clientId, string? assigned) =>
        await Admit(await opening.ConfigureAwait(false), connect, principal, clientId, assigned).ConfigureAwait(false);

    private ValueTask Admit(RelayError? overLimit, MqttConnect connect, RelayPrincipal principal, string clientId, string? assigned)
    {
        if (overLimit is not null)
        {
            return Refuse(MqttReasonCodes.V3ServerUnavailable, MqttReasonCodes.QuotaExceeded, overLimit.Message);
        }

        var v5 = V5;
        _countedApp = principal.AppId;
        _clientId = clientId;
        _keysVersion = Node.Authenticator.KeysVersion;
        var properties = connect.Properties;
        _keepAliveSeconds = connect.KeepAliveSeconds;
        ushort? serverKeepAlive = null;
        if (v5 && (_keepAliveSeconds == 0 || _keepAliveSeconds > Settings.MaxKeepAliveSeconds))
        {
            // MQTT 5 §3.2.2.3.14: the server may impose its own keep-alive, which the client then uses.
            _keepAliveSeconds = (ushort)Settings.MaxKeepAliveSeconds;
            serverKeepAlive = _keepAliveSeconds;
        }

        var window = Math.Min(Settings.MaxInflight, properties?.ReceiveMaximum ?? ushort.MaxValue);
        _window = window;
        _clientMaxPacket = properties?.MaximumPacketSize ?? long.MaxValue;

        // MQTT 5 §3.1.2.11.5: no more aliases than the client takes (absent: none) [MQTT-3.1.2-26/27].
        _aliasesToSend = v5 ? Math.Min(properties?.TopicAliasMaximum ?? (ushort)0, (ushort)Settings.MaxServerTopicAliases) : (ushort)0;
        if (connect.HasWill)
        {
            Side.Will = connect;
        }
        _reasonStrings = properties?.RequestProblemInformation != 0;
        _principal = principal;

        // A second connection with the client id takes over: the first is closed (MQTT 5: DISCONNECT 0x8E), and hands its
        // session back before this one resumes it.
        _broker.Claim(App, clientId, this)?.TakenOver();

        // And across nodes: the id is claimed for this connection, so one with it on another node is closed too; the
        // session is opened under the claim (the session store orders its holders by it).
        var claim = ClaimAcrossNodesAsync(clientId, connect.CleanSession);

        // MQTT 3.1.1: clean session 0 asks for a persistent session (kept Relay:Mqtt:MaxSessionExpirySeconds); MQTT 5: a
        // Session Expiry Interval above 0 does, Clean Start 1 discards the one there was.
        var requested = v5 ? properties?.SessionExpiryInterval ?? 0 : connect.CleanSession ? 0u : uint.MaxValue;
        var expiry = Math.Min(requested, Settings.MaxSessionExpirySeconds);

        // Over Redis: the will is recorded for another node to publish if this one dies, replacing the entry an earlier
        // connection of the client id left on any node (a dead node's will never fires after its client came back).
        if (_broker.RegisterWill(App, clientId, _side?.Will, principal, v5, expiry) is { } willEntry)
        {
            Side.WillEntry = willEntry;
        }
        return OpenSessionAsync(clientId, connect.CleanSession, expiry, v5 && requested > expiry ? expiry : null, assigned, serverKeepAlive, claim);
    }

    private async ValueTask OpenSessionAsync(string clientId, bool cleanStart, uint expiry, uint? toldExpiry, string? assigned, ushort? serverKeepAlive, Task<long> claim)
    {
        var v5 = V5;
        var (session, present, restore) = await _broker.OpenSessionAsync(App, clientId, cleanStart, expiry, claim).ConfigureAwait(false);
        bool movedAway, ended;
        lock (this)
        {
            _session = session;
            (movedAway, ended) = (_movedAway, _endedElsewhere);
        }

        if (movedAway)
        {
            // Taken over from another node while the session opened: it ends here as soon as this connection lets go.
            _ = _broker.EndMovedSessionAsync(session, ended);
        }

        // The will is in the store before CONNACK (written alongside the claim, so no round trip more): a client told
        // it is connected has a will that another node publishes if this one dies at once. A store that did not answer
        // was logged; the will is then this node's only.
        if (_side?.WillEntry is { } willEntry)
        {
            await willEntry.ConfigureAwait(false);
        }

        Send(new MqttConnAck
        {
            SessionPresent = present,
            ReasonCode = 0,
            Properties = v5 ? new MqttProperties
            {
                AssignedClientIdentifier = assigned,
                ServerKeepAlive = serverKeepAlive,
                SessionExpiryInterval = toldExpiry,
                ReceiveMaximum = (ushort)Settings.ReceiveMaximum,
                MaximumPacketSize = (uint)Settings.MaxPacketBytes,
                RetainAvailable = Settings.MaxRetainedPerApp == 0 ? (byte)0 : null,
                TopicAliasMaximum = MaxTopicAliases,
            } : null,
        });

        // What the session kept follows CONNACK: deliveries left unacknowledged (DUP), then what arrived while away.
        session.Attach(this);
        LogConnected(Logger, ConnectionId, App, clientId, _level);

        // A session another node held: subscribed again here, each channel recovered from history after its position.
        if (restore is not null)
        {
            await RestoreAsync(restore).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// A connection on another node claimed this one's client id with claim <paramref name="number"/>: it takes over if it
    /// came after this connection's own claim (one still on its way is settled when it comes back).
    /// <paramref name="endsSession"/>: that connection ends the session rather than resuming it (Clean Start 1).
    /// </summary>
    public void ClaimedElsewhere(long number, bool endsSession)
    {
        bool takenOver;
        lock (this)
        {
            if (number > _claimedElsewhere)
            {
                (_claimedElsewhere, _endedElsewhere) = (number, endsSession);
            }

            takenOver = _claim != 0 && _claim < number;
        }

        if (takenOver)
        {
            TakenOverElsewhere();
        }
    }

    // The claim's number, or 0 when it could not be made. A clean start's claim says it ends the session the id had.
    private async Task<long> ClaimAcrossNodesAsync(string clientId, bool cleanStart)
    {
        long claim;
        try
        {
            claim = await _broker.Claims.ClaimAsync(MqttBroker.ClaimScope, App, clientId, cleanStart, Node.Stopping).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Connected all the same: a connection with the id on another node is then not closed from here.
            LogClaimFailed(Logger, ex, ConnectionId, clientId);
            return 0;
        }

        bool takenOver;
        lock (this)
        {
            _claim = claim;
            takenOver = _claimedElsewhere > claim;
        }

        if (takenOver)
        {
            TakenOverElsewhere();
        }

        return claim;
    }

    // Taken over from another node: closed as for a takeover here, and its session (once open) ends once handed back.
    private void TakenOverElsewhere()
    {
        TakenOver();
        MqttSession? session;
        bool ended;
        lock (this)
        {
            _movedAway = true;
            (session, ended) = (_session, _endedElsewhere);
        }

        if (session is not null)
        {
            _ = _broker.EndMovedSessionAsync(session, ended);
        }
    }

    /// <summary>Another connection took this one's client id.</summary>
    private void TakenOver()
    {
        LogTakenOver(Logger, ConnectionId, _clientId);
        Close(MqttReasonCodes.SessionTakenOver, "another connection took this client id");
    }

    /// <summary>The client certificate this TLS connection presented, checked at the handshake (null: none, or not TLS).</summary>
    public MqttCertificateIdentity? Certificate { get; init; }

    private AuthResult Authenticate(MqttConnect connect, string clientId)
    {
        if (Certificate is { } certificate)
        {
            return AuthenticateCertificate(certificate, clientId);
        }

        if (connect.UserName is null && connect.Password is null && _broker.Options.Anonymous is { Enabled: true } anonymous)
        {
            return AuthenticateAnonymous(anonymous, clientId);
        }

        if (connect.UserName is null || connect.Password is null)
        {
            return AuthResult.Fail(ErrorCodes.NoCredentials, "no credentials: user name = key name (APPID.KEYID) and password = secret, or user name 'token' and password = a JWT");
        }

        var password = Encoding.UTF8.GetString(connect.Password);
        if (connect.UserName == TokenUserName)
        {
            return Node.Authenticator.AuthenticateToken(password);
        }

        // The same check as the WebSocket's ?key=APPID.KEYID:SECRET&clientId=…
        var context = new DefaultHttpContext();
        context.Request.QueryString = QueryString.Create(new KeyValuePair<string, string?>[] { new("key", connect.UserName + ":" + password), new("clientId", clientId) });
        return Node.Authenticator.Authenticate(context);
    }

    /// <summary>
    /// A CONNECT without credentials where <c>Relay:Mqtt:Anonymous:Key</c> is set: that key, with the MQTT client id as
    /// the Relay client id; from a loopback address only unless <c>LoopbackOnly</c> is false.
    /// </summary>
    private AuthResult AuthenticateAnonymous(MqttAnonymousOptions anonymous, string clientId)
    {
        if (anonymous.LoopbackOnly && !FromLoopback)
        {
            return AuthResult.Fail(ErrorCodes.NoCredentials, "no credentials: connections without them are taken from this machine only (Relay:Mqtt:Anonymous:LoopbackOnly); send user name = key name (APPID.KEYID) and password = secret, or user name 'token' and password = a JWT");
        }

        return _broker.Keys.Find(anonymous.Key!) is { } principal
            ? WithClientId(principal, clientId)
            : AuthResult.Fail(ErrorCodes.NoCredentials, $"connections without credentials connect as key {anonymous.Key} (Relay:Mqtt:Anonymous:Key), which does not exist");
    }

    /// <summary>
    /// A valid client certificate is the credentials (a user name and password sent besides are not looked at): the key
    /// its common name maps to, with the MQTT client id as the Relay client id (1-128 characters, no control characters,
    /// the rule every client id follows).
    /// </summary>
    private AuthResult AuthenticateCertificate(MqttCertificateIdentity certificate, string clientId)
    {
        if (certificate.Key is null || _broker.Keys.Find(certificate.Key) is not { } principal)
        {
            return AuthResult.Fail(ErrorCodes.NoCredentials, certificate.Key is null
                ? $"the client certificate CN={certificate.CommonName} maps to no key (Relay:Mqtt:ClientCertificates:Keys)"
                : $"the client certificate CN={certificate.CommonName} maps to key {certificate.Key}, which does not exist");
        }

        return WithClientId(principal, clientId);
    }

    /// <summary>A key found without its secret, with the MQTT client id as the Relay client id (1-128 characters, no control characters, the rule every client id follows).</summary>
    private static AuthResult WithClientId(RelayPrincipal principal, string clientId)
    {
        if (clientId.Length > 128 || clientId.Any(char.IsControl))
        {
            return AuthResult.Fail(ErrorCodes.BadRequest, "clientId must be 1-128 characters without control characters");
        }

        return AuthResult.Success(principal with { ClientId = clientId });
    }

    /// <summary>Refuses the CONNECT with the version's code (3.1.1 return code or 5.0 reason code) and closes.</summary>
    private ValueTask Refuse(byte v3Code, byte v5Code, string reason)
    {
        Send(new MqttConnAck { ReasonCode = V5 ? v5Code : v3Code, Properties = V5 ? new MqttProperties { ReasonString = reason } : null });
        Close(0, null);
        return ValueTask.CompletedTask;
    }

    /// <summary>Called once a second with the key set's version: a removed key disconnects; changed capabilities drop what they no longer allow.</summary>
    public void CheckCredentials(long keysVersion)
    {
        var principal = _principal;
        if (principal is null || Volatile.Read(ref _keysVersion) == keysVersion || Volatile.Read(ref _closing) != 0)
        {
            return;
        }

        var result = Node.Authenticator.Recheck(principal);
        Volatile.Write(ref _keysVersion, keysVersion);
        if (!result.Succeeded)
        {
            LogKeyRevoked(Logger, ConnectionId, principal.AppId, principal.KeyId);
            Close(MqttReasonCodes.NotAuthorized, "the key behind these credentials was removed or its secret changed");
            return;
        }

        if (!ReferenceEquals(result.Principal, principal))
        {
            _principal = result.Principal;
            _ = DropForbiddenAsync();
        }
    }

    [LoggerMessage(EventId = 1410, Level = LogLevel.Debug, Message = "MQTT connection {ConnectionId} connected: app {App}, client id {ClientId}, protocol level {Level}")]
    private static partial void LogConnected(ILogger logger, string connectionId, string app, string clientId, byte level);

    [LoggerMessage(EventId = 1411, Level = LogLevel.Debug, Message = "MQTT connection {ConnectionId} refused: credentials gave {Code}")]
    private static partial void LogRefused(ILogger logger, string connectionId, int code);

    [LoggerMessage(EventId = 1412, Level = LogLevel.Information, Message = "MQTT connection {ConnectionId} taken over by a new connection with client id {ClientId}")]
    private static partial void LogTakenOver(ILogger logger, string connectionId, string? clientId);

    [LoggerMessage(EventId = 1423, Level = LogLevel.Warning, Message = "MQTT connection {ConnectionId}: client id '{ClientId}' could not be claimed across nodes; a connection with it on another node stays open")]
    private static partial void LogClaimFailed(ILogger logger, Exception exception, string connectionId, string clientId);

    [LoggerMessage(EventId = 1413, Level = LogLevel.Information, Message = "MQTT connection {ConnectionId} disconnected: key {AppId}.{KeyId} was removed or its secret changed")]
    private static partial void LogKeyRevoked(ILogger logger, string connectionId, string appId, string keyId);
}

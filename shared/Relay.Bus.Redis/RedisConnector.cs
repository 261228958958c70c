using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using OpenTelemetry.Instrumentation.StackExchangeRedis;
using StackExchange.Redis;

namespace Relay.Bus.Redis;

/// <summary>
/// The process's one StackExchange.Redis <see cref="IConnectionMultiplexer"/> (the bus, presence, the auth key directory
/// all share it), made on first use from <c>Relay:Redis</c>, with every <see cref="RedisLuaScript"/> loaded on every
/// server before it is handed out and again on each server whose connection is restored.
/// </summary>
public sealed partial class RedisConnector : IAsyncDisposable
{
    private readonly RedisBusOptions _options;
    private readonly ILogger _logger;
    private readonly Lazy<Task<IConnectionMultiplexer>> _connection;

    /// <summary>Made by DI (<c>AddRelayBus().AddRedis()</c>, or the auth key follower); connects on the first <see cref="ConnectAsync()"/>.</summary>
    public RedisConnector(IOptions<RedisBusOptions> options, ILogger<RedisConnector>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Value;
        _logger = logger ?? (ILogger)NullLogger.Instance;
        _connection = new Lazy<Task<IConnectionMultiplexer>>(ConnectOnceAsync, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    /// <summary>
    /// How often profiled Redis calls are turned into spans: a second keeps them close behind the hop spans around them
    /// (the instrumentation's default is 10 s).
    /// </summary>
    public static readonly TimeSpan TraceFlushInterval = TimeSpan.FromSeconds(1);

    // The tracing instrumentation and the connected multiplexer meet under this gate, whichever comes second.
    private readonly Lock _instrumentationGate = new();
    private StackExchangeRedisInstrumentation? _instrumentation;
    private IConnectionMultiplexer? _connected;
    private bool _instrumented;

    /// <summary>
    /// Traces this connector's multiplexer with <paramref name="instrumentation"/>: at once if connected, else when it
    /// connects (called when the tracer provider is built).
    /// </summary>
    public void Instrument(StackExchangeRedisInstrumentation instrumentation)
    {
        ArgumentNullException.ThrowIfNull(instrumentation);
        lock (_instrumentationGate)
        {
            _instrumentation = instrumentation;
            InstrumentIfBoth();
        }
    }

    private void InstrumentIfBoth()
    {
        if (!_instrumented && _instrumentation is { } instrumentation && _connected is { } multiplexer)
        {
            instrumentation.AddConnection(multiplexer);
            _instrumented = true;
        }
    }

    /// <summary>The connected multiplexer (connecting once, on the first call).</summary>
    public Task<IConnectionMultiplexer> ConnectAsync() => _connection.Value;

    /// <summary>The multiplexer, once <see cref="ConnectAsync()"/> completed.</summary>
    public IConnectionMultiplexer Multiplexer =>
        _connection.IsValueCreated && _connection.Value.IsCompletedSuccessfully
            ? _connection.Value.Result
            : throw new InvalidOperationException("Redis is not connected yet");

    /// <summary>
    /// Connects a multiplexer with Relay's scripts loaded on every server (and loaded again when a connection is
    /// restored). Tests and tools use this; services use the one <see cref="RedisConnector"/> in DI.
    /// </summary>
    public static async Task<IConnectionMultiplexer> ConnectAsync(ConfigurationOptions options, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        logger ??= NullLogger.Instance;

        // The bus's scripts must be known before the first call: an append never falls back to sending its script.
        RuntimeHelpers.RunClassConstructor(typeof(RedisChannelLog).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(RedisPresence).TypeHandle);
        RuntimeHelpers.RunClassConstructor(typeof(RedisBus).TypeHandle);
        var multiplexer = await ConnectionMultiplexer.ConnectAsync(options).ConfigureAwait(false);
        multiplexer.ConnectionRestored += (_, e) =>
        {
            if (e.ConnectionType == ConnectionType.Interactive)
            {
                _ = ReloadAsync(multiplexer, e, logger);
            }
        };
        multiplexer.ConnectionFailed += (_, e) => LogConnectionFailed(logger, e.EndPoint?.ToString(), e.ConnectionType, e.FailureType, e.Exception?.Message);
        await RedisLuaScript.LoadAllAsync(multiplexer).ConfigureAwait(false);
        return multiplexer;
    }

    /// <summary>Whether <paramref name="multiplexer"/> is connected to a Redis Cluster (as opposed to one server or Sentinel's master).</summary>
    public static bool IsCluster(IConnectionMultiplexer multiplexer)
    {
        ArgumentNullException.ThrowIfNull(multiplexer);
        foreach (var server in multiplexer.GetServers())
        {
            if (server.ServerType == ServerType.Cluster)
            {
                return true;
            }
        }

        return false;
    }

    private static async Task ReloadAsync(IConnectionMultiplexer multiplexer, ConnectionFailedEventArgs e, ILogger logger)
    {
        try
        {
            await RedisLuaScript.LoadAsync(multiplexer, e.EndPoint!).ConfigureAwait(false);
            LogRestored(logger, e.EndPoint?.ToString());
        }
        catch (Exception error) when (error is RedisException or TimeoutException or ArgumentException)
        {
            // A call that meets NOSCRIPT loads them again.
            LogReloadFailed(logger, e.EndPoint?.ToString(), error.Message);
        }
    }

    private async Task<IConnectionMultiplexer> ConnectOnceAsync()
    {
        var options = _options.ToConfigurationOptions();
        try
        {
            var multiplexer = await ConnectAsync(options, _logger).ConfigureAwait(false);
            lock (_instrumentationGate)
            {
                _connected = multiplexer;
                InstrumentIfBoth();
            }

            LogConnected(_logger, _options.Describe());
            return multiplexer;
        }
        catch (Exception e) when (e is RedisException or TimeoutException or OperationCanceledException)
        {
            // OperationCanceledException: the client's own connect timeout can surface as one (nothing of ours cancels it).
            throw new InvalidOperationException($"cannot reach Redis at {_options.Describe()} (Relay:Redis:Configuration): {e.Message}. Start Redis or fix the setting{CertificateHint()}.", e);
        }
    }

    // A TLS refusal reads as a failed connect: say which certificates were in play.
    private string CertificateHint() => _options switch
    {
        { HasClientCertificate: true } => $"; if the TLS handshake failed, the server may not trust the client certificate (Relay:Redis:ClientCertificatePath '{_options.ClientCertificatePath}') or the client the server's (Relay:Redis:TrustedCaPath)",
        { TrustedCaPath: { Length: > 0 } } => "; if the TLS handshake failed, the server may require a client certificate (Relay:Redis:ClientCertificatePath) or its own may not chain to Relay:Redis:TrustedCaPath",
        _ => "",
    };

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_connection.IsValueCreated && _connection.Value.IsCompletedSuccessfully)
        {
            await _connection.Value.Result.DisposeAsync().ConfigureAwait(false);
        }
    }

    [LoggerMessage(EventId = 2020, Level = LogLevel.Information, Message = "Connected to Redis ({Configuration})")]
    private static partial void LogConnected(ILogger logger, string configuration);

    [LoggerMessage(EventId = 2021, Level = LogLevel.Warning, Message = "Redis connection to {EndPoint} ({Type}) failed: {Failure} {Reason}")]
    private static partial void LogConnectionFailed(ILogger logger, string? endPoint, ConnectionType type, ConnectionFailureType failure, string? reason);

    [LoggerMessage(EventId = 2022, Level = LogLevel.Information, Message = "Redis connection to {EndPoint} restored; scripts loaded")]
    private static partial void LogRestored(ILogger logger, string? endPoint);

    [LoggerMessage(EventId = 2023, Level = LogLevel.Warning, Message = "Could not load scripts on {EndPoint} after a reconnect: {Reason}")]
    private static partial void LogReloadFailed(ILogger logger, string? endPoint, string reason);
}

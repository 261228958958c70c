using System.Diagnostics.Metrics;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Relay.Core.Protocol;
using Relay.ServiceDefaults;

namespace Relay.Ingress.Connections;

/// <summary>
/// The node's cap on client connections (<see cref="IngressOptions.MaxConnections"/>): every socket a listener accepts
/// counts until it closes, whatever it turns out to be (realtime, SSE, HTTP), so descriptors never run out (see
/// <see cref="DescriptorLimit"/>). Past the cap a connection is answered <c>503</c> with the protocol's 50300 body and a
/// <c>Retry-After</c>, and closed. At most <see cref="RefusalSlotCount"/> such answers are in flight (above the reserve):
/// when all are busy, Relay's listener stops accepting until one is free (the kernel's backlog holds the rest), so a
/// flood costs a bounded number of descriptors above the cap and every client that waits gets its answer. The
/// per-address limits (<see cref="AddressLimits"/>) are checked here too, after the cap, and refused the same way with
/// <c>429</c> and 42900.
/// </summary>
internal sealed partial class ConnectionGate : IHostedService, IHealthCheck
{
    /// <summary>Refusals answered at once: each holds a descriptor for a moment (the request is usually there already).</summary>
    public const int RefusalSlotCount = 32;

    /// <summary>How long a refusal waits for the request (read before closing, so the close does not reset the answer away).</summary>
    public static readonly TimeSpan RefusalWait = TimeSpan.FromMilliseconds(500);

    /// <summary>Seconds a refused client is asked to wait; clients add their own jitter.</summary>
    public const int RetryAfterSeconds = 5;

    /// <summary>Seconds a client refused for its address's connection rate is asked to wait: the bucket refills within one.</summary>
    public const int RateRetryAfterSeconds = 1;

    private readonly ILogger<ConnectionGate> _logger;
    private readonly (long Soft, long Hard)? _limit;
    private readonly int _openAtStart;
    private readonly int _reserve;
    private readonly byte[] _addressFull;
    private readonly byte[] _addressRate;
    private int _open;
    private long _refused;

    public ConnectionGate(IOptions<IngressOptions> options, IMeterFactory meters, IngressNode node, ILogger<ConnectionGate> logger)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(node);
        _logger = logger;
        Addresses = new AddressLimits(options.Value, node.Time, node.Refusals);
        _limit = DescriptorLimit.Raise();
        _openAtStart = DescriptorLimit.OpenNow();
        _reserve = _limit is { } limit ? Reserve(limit.Soft) + RefusalSlotCount : 0;
        Max = options.Value.MaxConnections > 0 ? options.Value.MaxConnections
            : _limit is { } known ? (int)Math.Clamp(known.Soft - _openAtStart - _reserve, 0, int.MaxValue)
            : int.MaxValue;
        if (_limit is { } soft && options.Value.MaxConnections > 0 && options.Value.MaxConnections > soft.Soft - _openAtStart - _reserve)
        {
            throw new OptionsValidationException(IngressOptions.SectionName, typeof(IngressOptions), [
                $"Relay:Ingress:MaxConnections is {options.Value.MaxConnections}, but this process may open only {soft.Soft} files (hard limit {soft.Hard}), " +
                $"{_openAtStart} are open already and {_reserve} are kept for the runtime's threads and the node's own connections: " +
                "raise the limit (ulimit -n, systemd LimitNOFILE, the container's nofile ulimit) or lower MaxConnections (0 derives it from the limit)."]);
        }

        if (Max == 0)
        {
            throw new InvalidOperationException(
                $"This process may open only {_limit?.Soft} files and {_openAtStart} are open already: no room is left for client connections. " +
                "Raise the limit (ulimit -n, systemd LimitNOFILE, the container's nofile ulimit).");
        }

        Refusal = RefusalResponse(503, "Service Unavailable", RetryAfterSeconds, new RelayError(ErrorCodes.Unavailable, $"this node is at its limit of {Max} connections: retry after a few seconds, or connect to another node"));
        _addressFull = RefusalResponse(429, "Too Many Requests", RetryAfterSeconds, new RelayError(ErrorCodes.RateLimited, $"this address holds its limit of {Addresses.MaxOpen} connections to this node (Relay:Ingress:MaxConnectionsPerIp): close one, or retry after a few seconds"));
        _addressRate = RefusalResponse(429, "Too Many Requests", RateRetryAfterSeconds, new RelayError(ErrorCodes.RateLimited, $"this address opens connections faster than {Addresses.Rate} a second (Relay:Ingress:ConnectionRatePerIp): retry after a second, with backoff"));
        RefusalSlots = new SemaphoreSlim(RefusalSlotCount);
        var meter = meters.Create(IngressMetrics.MeterName);
        meter.CreateObservableGauge("relay.ingress.connections_max", () => Max, description: "Client connections this node accepts at most (Relay:Ingress:MaxConnections, or derived from the descriptor limit).");
        meter.CreateObservableGauge("relay.ingress.sockets_open", () => Open, description: "Client sockets open and counted against the cap (realtime, SSE and HTTP connections alike).");
        meter.CreateObservableCounter("relay.ingress.connections_refused", () => Interlocked.Read(ref _refused), description: "Connections refused because the node was at its cap.");
    }

    /// <summary>The most client connections open at once.</summary>
    public int Max { get; }

    /// <summary>Client connections open now.</summary>
    public int Open => Volatile.Read(ref _open);

    /// <summary>Connections refused since start.</summary>
    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>The whole HTTP answer to a connection refused at the node's cap.</summary>
    public byte[] Refusal { get; }

    /// <summary>The per-address limits.</summary>
    public AddressLimits Addresses { get; }

    /// <summary>The whole HTTP answer to a connection refused for <paramref name="admission"/>.</summary>
    public byte[] RefusalFor(Admission admission) => admission switch
    {
        Admission.AddressFull => _addressFull,
        Admission.AddressRate => _addressRate,
        _ => Refusal,
    };

    /// <summary>
    /// Counts a new connection from <paramref name="address"/> (<see cref="AddressLimits.AddressOf"/>) in, or says which
    /// limit refuses it: the node's cap first, then the address's. A refused connection is not counted.
    /// </summary>
    public Admission TryEnter(IPAddress? address)
    {
        if (Interlocked.Increment(ref _open) > Max)
        {
            Interlocked.Decrement(ref _open);
            Interlocked.Increment(ref _refused);
            return Admission.NodeFull;
        }

        var admission = Addresses.TryEnter(address);
        if (admission != Admission.Admitted)
        {
            Interlocked.Decrement(ref _open);
        }

        return admission;
    }

    /// <summary>A connection counted by <see cref="TryEnter"/> closed.</summary>
    public void Exit(IPAddress? address)
    {
        Addresses.Exit(address);
        Interlocked.Decrement(ref _open);
    }

    /// <summary>
    /// Answers past the cap in flight at once (each holds a descriptor for up to <see cref="RefusalWait"/>): take one
    /// before answering, release it after closing.
    /// </summary>
    public SemaphoreSlim RefusalSlots { get; }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (_limit is { } limit)
        {
            LogCap(_logger, Max, limit.Soft, limit.Hard, _openAtStart, _reserve);
        }
        else
        {
            LogCapWithoutLimit(_logger, Max);
        }

        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Readiness: a node at its cap is not ready for more clients (a load balancer sends them elsewhere).</summary>
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(Open < Max ? HealthCheckResult.Healthy() : HealthCheckResult.Unhealthy($"at the connection cap ({Max})"));

    /// <summary>
    /// Descriptors kept free for the runtime above the cap and the refusal slots: three or four for every thread it
    /// starts (the thread pool grows fast on a busy machine), assemblies loaded after start (~40 in a first
    /// connection's path), the node's own connections. 1/32 of the limit, 256 to 1,024: with 128, a flood on a busy
    /// two-core machine told it had 16 cores still ran the process out (ConnectionFloodTests, CI-like load).
    /// </summary>
    internal static int Reserve(long limit) => (int)Math.Clamp(limit / 32, 256, 1024);

    private static byte[] RefusalResponse(int status, string reason, int retryAfter, RelayError error)
    {
        using var body = new MemoryStream();
        using (var writer = new Utf8JsonWriter(body))
        {
            RelayErrorResult.WriteBody(writer, error);
        }

        var head = $"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\nRetry-After: {retryAfter}\r\nConnection: close\r\n\r\n";
        return [.. Encoding.ASCII.GetBytes(head), .. body.ToArray()];
    }

    [LoggerMessage(EventId = 1400, Level = LogLevel.Information, Message = "Client connections capped at {Max} (open-file limit {Soft}, hard {Hard}; {Open} open at start, {Reserve} kept for the runtime)")]
    private static partial void LogCap(ILogger logger, int max, long soft, long hard, int open, int reserve);

    [LoggerMessage(EventId = 1401, Level = LogLevel.Information, Message = "Client connections capped at {Max} (no open-file limit known on this system)")]
    private static partial void LogCapWithoutLimit(ILogger logger, int max);
}

using System.Net;
using Relay.Ingress.Limits;
using Relay.Ingress.Realtime;

namespace Relay.Ingress.Connections;

/// <summary>
/// Per-address limits at accept (<see cref="IngressOptions.MaxConnectionsPerIp"/>, <see cref="IngressOptions.ConnectionRatePerIp"/>):
/// connections open per peer address and new connections per second per address (a token bucket), over every listener,
/// on this node. The address is the socket's peer (an IPv4-mapped IPv6 address counts as the IPv4 one). One lock over a
/// table of the addresses seen: an accept takes it once, a close once (both rare beside messages).
/// </summary>
internal sealed class AddressLimits
{
    /// <summary>How often idle addresses (nothing open, a full bucket) are forgotten.</summary>
    private static readonly TimeSpan SweepEvery = TimeSpan.FromSeconds(10);

    private readonly int _maxOpen;
    private readonly int _rate;
    private readonly int _burst;
    private readonly TimeProvider _time;
    private readonly LimitRefusals _refusals;
    private readonly Dictionary<IPAddress, Entry> _addresses = [];
    private readonly Lock _lock = new();
    private long _lastSweep;

    public AddressLimits(IngressOptions options, TimeProvider time, LimitRefusals refusals)
    {
        ArgumentNullException.ThrowIfNull(options);
        _maxOpen = options.MaxConnectionsPerIp;
        _rate = options.ConnectionRatePerIp;
        _burst = options.ConnectionBurstPerIp > 0 ? options.ConnectionBurstPerIp : options.ConnectionRatePerIp * 2;
        _time = time;
        _refusals = refusals;
        _lastSweep = time.GetTimestamp();
    }

    /// <summary>Whether any per-address limit is set (none: nothing is counted).</summary>
    public bool Enabled => _maxOpen > 0 || _rate > 0;

    /// <summary>The most connections one address may hold open (0: no limit).</summary>
    public int MaxOpen => _maxOpen;

    /// <summary>New connections per second one address may open (0: no limit).</summary>
    public int Rate => _rate;

    /// <summary>Addresses tracked now (open connections, or a bucket still refilling).</summary>
    public int Tracked
    {
        get
        {
            lock (_lock)
            {
                return _addresses.Count;
            }
        }
    }

    /// <summary>The address a limit counts for <paramref name="remote"/>, or null when there is none (Unix sockets) or no limit is set.</summary>
    public IPAddress? AddressOf(EndPoint? remote) =>
        Enabled && remote is IPEndPoint ip ? (ip.Address.IsIPv4MappedToIPv6 ? ip.Address.MapToIPv4() : ip.Address) : null;

    /// <summary>Counts a new connection from <paramref name="address"/> in, or says which limit refuses it (not counted).</summary>
    public Admission TryEnter(IPAddress? address)
    {
        if (address is null)
        {
            return Admission.Admitted;
        }

        var now = _time.GetTimestamp();
        lock (_lock)
        {
            Sweep(now);
            if (!_addresses.TryGetValue(address, out var entry))
            {
                entry = new Entry(_rate > 0 ? new TokenBucket(_rate, _burst, now) : null);
                _addresses[address] = entry;
            }

            if (_maxOpen > 0 && entry.Open >= _maxOpen)
            {
                _refusals.Add(LimitRefusals.IpConnections);
                return Admission.AddressFull;
            }

            if (entry.Rate is { } bucket && !bucket.TryTake(now, _time.TimestampFrequency))
            {
                _refusals.Add(LimitRefusals.IpRate);
                return Admission.AddressRate;
            }

            entry.Open++;
            return Admission.Admitted;
        }
    }

    /// <summary>A connection counted in by <see cref="TryEnter"/> closed.</summary>
    public void Exit(IPAddress? address)
    {
        if (address is null)
        {
            return;
        }

        lock (_lock)
        {
            if (_addresses.TryGetValue(address, out var entry) && entry.Open > 0)
            {
                entry.Open--;
                if (entry.Open == 0 && entry.Rate is null)
                {
                    _addresses.Remove(address);
                }
            }
        }
    }

    // Under the lock: forgets addresses with nothing open whose bucket has refilled, so the table holds only the active.
    private void Sweep(long now)
    {
        if (_time.GetElapsedTime(_lastSweep, now) < SweepEvery)
        {
            return;
        }

        _lastSweep = now;
        List<IPAddress>? idle = null;
        foreach (var (address, entry) in _addresses)
        {
            if (entry.Open == 0 && (entry.Rate is null || entry.Rate.IsFullAt(now, _time.TimestampFrequency)))
            {
                (idle ??= []).Add(address);
            }
        }

        foreach (var address in idle ?? [])
        {
            _addresses.Remove(address);
        }
    }

    private sealed class Entry(TokenBucket? rate)
    {
        public int Open;

        public TokenBucket? Rate { get; } = rate;
    }
}

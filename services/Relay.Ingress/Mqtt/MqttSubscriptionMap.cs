namespace Relay.Ingress.Mqtt;

/// <summary>
/// A session's subscriptions by filter: the first held in two fields, a dictionary made only for a second. Most MQTT
/// devices subscribe to one filter, and a dictionary of one cost ~200 bytes per idle connection (docs/benchmarks.md,
/// MQTT). Not thread-safe: used under its own lock, as the dictionary was (<see cref="MqttSession.Subscriptions"/>).
/// </summary>
internal sealed class MqttSubscriptionMap
{
    private string? _filter;
    private MqttSubscriptionSink? _sink;

    // Every subscription once there were two at the same time (the fields above are then empty).
    private Dictionary<string, MqttSubscriptionSink>? _all;

    public int Count => Volatile.Read(ref _all) is { } all ? all.Count : _filter is null ? 0 : 1;

    public bool ContainsKey(string filter) => _all is { } all ? all.ContainsKey(filter) : filter == _filter;

    public bool TryAdd(string filter, MqttSubscriptionSink sink)
    {
        if (_all is { } all)
        {
            return all.TryAdd(filter, sink);
        }

        if (_filter is null)
        {
            _filter = filter;
            _sink = sink;
            return true;
        }

        if (filter == _filter)
        {
            return false;
        }

        Volatile.Write(ref _all, new Dictionary<string, MqttSubscriptionSink>(StringComparer.Ordinal) { [_filter] = _sink!, [filter] = sink });
        _filter = null;
        _sink = null;
        return true;
    }

    public bool Remove(string filter, out MqttSubscriptionSink? sink)
    {
        if (_all is { } all)
        {
            return all.Remove(filter, out sink);
        }

        if (_filter is not null && filter == _filter)
        {
            sink = _sink;
            _filter = null;
            _sink = null;
            return true;
        }

        sink = null;
        return false;
    }

    public bool Remove(string filter) => Remove(filter, out _);

    public void Clear()
    {
        _all = null;
        _filter = null;
        _sink = null;
    }

    /// <summary>The sinks, in a new array.</summary>
    public MqttSubscriptionSink[] Sinks()
    {
        if (_all is { } all)
        {
            return [.. all.Values];
        }

        return _sink is { } sink ? [sink] : [];
    }

    public Enumerator GetEnumerator() => new(this);

    /// <summary>Filter and sink pairs, as a dictionary's enumerator gives them (no allocation).</summary>
    public struct Enumerator
    {
        private readonly MqttSubscriptionMap _map;
        private Dictionary<string, MqttSubscriptionSink>.Enumerator _inner;
        private readonly bool _useInner;
        private bool _done;

        internal Enumerator(MqttSubscriptionMap map)
        {
            _map = map;
            _useInner = map._all is not null;
            _inner = _useInner ? map._all!.GetEnumerator() : default;
            _done = !_useInner && map._filter is null;
            Current = default;
        }

        public KeyValuePair<string, MqttSubscriptionSink> Current { get; private set; }

        public bool MoveNext()
        {
            if (_useInner)
            {
                if (!_inner.MoveNext())
                {
                    return false;
                }

                Current = _inner.Current;
                return true;
            }

            if (_done)
            {
                return false;
            }

            _done = true;
            Current = new KeyValuePair<string, MqttSubscriptionSink>(_map._filter!, _map._sink!);
            return true;
        }
    }
}

using System.Buffers;
using System.Buffers.Text;
using System.Text;

namespace Relay.Bench.Load;

/// <summary>
/// Counts what a load-generating connection receives without parsing it: stamped payloads (each one a delivery,
/// carrying its publish time) and the protocol's ready, acknowledgement and error tokens. Works the same on Relay's
/// JSON frames, NATS's MSG lines and SignalR's records, so every peer is measured by the same code. Tokens split
/// across reads are found by keeping the last few bytes of each read.
/// </summary>
internal sealed class StreamScanner
{
    private readonly ProtocolTokens _tokens;
    private readonly Action<long>? _onStamp;
    private readonly Action<long>? _onAcks;
    private readonly byte[] _carry;
    private readonly int _maxExtent;
    private int _carryLength;
    private long _stamps;
    private long _acks;
    private long _readies;
    private TaskCompletionSource? _waiter;
    private Func<bool>? _condition;
    private string? _error;
    private readonly bool _trackEpochs;
    private string? _epoch;
    private byte[] _epochBytes = [];
    private long _notRecovered;

    /// <param name="tokens">The protocol's tokens.</param>
    /// <param name="onStamp">Called with each delivery's publish time.</param>
    /// <param name="onAcks">Called with the number of acknowledgements in each read.</param>
    /// <param name="trackEpochs">Keep the last <c>"epoch":"…"</c> seen and count <c>"recovered":false</c> (Relay's resume, soak scenario).</param>
    public StreamScanner(ProtocolTokens tokens, Action<long>? onStamp = null, Action<long>? onAcks = null, bool trackEpochs = false)
    {
        _tokens = tokens;
        _trackEpochs = trackEpochs;
        _onStamp = onStamp;
        _onAcks = onAcks;
        _maxExtent = Math.Max(Stamp.Marker.Length + Stamp.Digits, Math.Max(tokens.Ready.Length, Math.Max(tokens.Ack.Length, tokens.Error.Length)));
        _carry = new byte[_maxExtent];
    }

    /// <summary>Stamped payloads received so far.</summary>
    public long Stamps => Volatile.Read(ref _stamps);

    /// <summary>Acknowledgement tokens received so far.</summary>
    public long Acks => Volatile.Read(ref _acks);

    /// <summary>The first error the server sent on this stream (up to 300 bytes of the read that held it), or null.</summary>
    public string? FirstError
    {
        get
        {
            lock (_carry)
            {
                return _error;
            }
        }
    }

    /// <summary>The last epoch a Relay frame on this stream named (with <c>trackEpochs</c>), or null.</summary>
    public string? Epoch => Volatile.Read(ref _epoch);

    /// <summary>Subscribe replies that said <c>"recovered":false</c> (with <c>trackEpochs</c>).</summary>
    public long NotRecovered => Volatile.Read(ref _notRecovered);

    /// <summary>Ready tokens (the server's greeting) received so far.</summary>
    public long Readies => Volatile.Read(ref _readies);

    /// <summary>Waits until <paramref name="condition"/> holds after some input, or fails on an error token or timeout.</summary>
    public async Task WaitAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_carry)
        {
            if (_error is not null)
            {
                throw new InvalidOperationException($"the server answered {what} with an error: {_error}");
            }

            if (condition())
            {
                return;
            }

            _condition = condition;
            _waiter = waiter;
        }

        try
        {
            await waiter.Task.WaitAsync(timeout).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            bool answered;
            lock (_carry)
            {
                answered = condition();
            }

            // Which side failed: an answer that came while the wait was not woken is the harness's bug, not the server's.
            throw new TimeoutException(answered
                ? $"the answer to {what} came but the wait for it was not woken within {timeout.TotalSeconds:0} s (a harness bug)"
                : $"no answer to {what} within {timeout.TotalSeconds:0} s");
        }
        finally
        {
            lock (_carry)
            {
                _waiter = null;
                _condition = null;
            }
        }
    }

    /// <summary>Scans the next bytes of data-frame payload.</summary>
    public void Scan(ReadOnlySpan<byte> data)
    {
        if (_carryLength == 0)
        {
            ScanJoined(data, 0);
            return;
        }

        var carried = _carryLength;
        var joined = ArrayPool<byte>.Shared.Rent(carried + data.Length);
        _carry.AsSpan(0, carried).CopyTo(joined);
        data.CopyTo(joined.AsSpan(carried));
        ScanJoined(joined.AsSpan(0, carried + data.Length), carried);
        ArrayPool<byte>.Shared.Return(joined);
    }

    private void ScanJoined(ReadOnlySpan<byte> data, int carried)
    {
        // The carry holds one byte less than the longest token, so no stamp fits in it whole. A shorter token
        // wholly inside it was counted with the last read: only occurrences that reach into the new bytes count.
        // Epochs first: a subscribe reply and the first message after it often share a read, and a stamp callback may
        // ask whether the reply said recovered: false.
        if (_trackEpochs)
        {
            TrackEpoch(data, carried);
        }

        var stamps = CountStamps(data);
        var acks = Count(Fresh(data, carried, _tokens.Ack.Length), _tokens.Ack);
        var readies = Count(Fresh(data, carried, _tokens.Ready.Length), _tokens.Ready);
        var errors = Count(Fresh(data, carried, _tokens.Error.Length), _tokens.Error);
        _carryLength = Math.Min(data.Length, _maxExtent - 1);
        data[^_carryLength..].CopyTo(_carry);

        if (stamps != 0)
        {
            Volatile.Write(ref _stamps, _stamps + stamps);
        }

        if (acks != 0)
        {
            Volatile.Write(ref _acks, _acks + acks);
            _onAcks?.Invoke(acks);
        }

        if (readies != 0)
        {
            Volatile.Write(ref _readies, _readies + readies);
        }

        // Whether a wait is set up is read under its lock, after the counts changed: reading _waiter here, without the
        // lock, missed a wait whose condition was checked before the counts changed and that registered after the read
        // (the idle scenario's "no answer to SUBSCRIBE within 30 s" for a client that had its PINGRESP).
        if (errors != 0 || stamps != 0 || acks != 0 || readies != 0)
        {
            Signal(errors != 0 ? Encoding.UTF8.GetString(data[..Math.Min(data.Length, 300)]) : null);
        }
    }

    private void Signal(string? error)
    {
        TaskCompletionSource? waiter;
        lock (_carry)
        {
            _error ??= error;
            waiter = _waiter;
            if (waiter is null)
            {
                return;
            }

            if (_error is null && !_condition!())
            {
                return;
            }

            _waiter = null;
        }

        if (_error is not null)
        {
            waiter.TrySetException(new InvalidOperationException($"the server answered with an error: {_error}"));
        }
        else
        {
            waiter.TrySetResult();
        }
    }

    // An epoch split between two reads is missed; the next frame that names it (every message does) brings it.
    private void TrackEpoch(ReadOnlySpan<byte> data, int carried)
    {
        var field = "\"epoch\":\""u8;
        var at = data.LastIndexOf(field);
        if (at >= 0)
        {
            var value = data[(at + field.Length)..];
            var end = value.IndexOf((byte)'"');
            if (end > 0 && !value[..end].SequenceEqual(_epochBytes))
            {
                _epochBytes = value[..end].ToArray();
                Volatile.Write(ref _epoch, Encoding.UTF8.GetString(_epochBytes));
            }
        }

        var notRecovered = Count(Fresh(data, carried, RecoveredFalse.Length), RecoveredFalse);
        if (notRecovered != 0)
        {
            Volatile.Write(ref _notRecovered, _notRecovered + notRecovered);
        }
    }

    private static ReadOnlySpan<byte> RecoveredFalse => "\"recovered\":false"u8;

    private int CountStamps(ReadOnlySpan<byte> data)
    {
        var count = 0;
        var marker = Stamp.Marker;
        while (true)
        {
            var at = data.IndexOf(marker);
            if (at < 0 || data.Length - at - marker.Length < Stamp.Digits)
            {
                return count;
            }

            var digits = data.Slice(at + marker.Length, Stamp.Digits);
            if (Utf8Parser.TryParse(digits, out long stamp, out var consumed) && consumed == Stamp.Digits)
            {
                count++;
                _onStamp?.Invoke(stamp);
            }

            data = data[(at + marker.Length + Stamp.Digits)..];
        }
    }

    private static ReadOnlySpan<byte> Fresh(ReadOnlySpan<byte> data, int carried, int tokenLength) =>
        data[Math.Max(0, carried - tokenLength + 1)..];

    private static int Count(ReadOnlySpan<byte> data, ReadOnlySpan<byte> token)
    {
        if (token.IsEmpty)
        {
            return 0;
        }

        var count = 0;
        while (true)
        {
            var at = data.IndexOf(token);
            if (at < 0)
            {
                return count;
            }

            count++;
            data = data[(at + token.Length)..];
        }
    }
}

/// <summary>The byte strings by which a protocol says hello, acknowledges a request, and refuses one.</summary>
internal sealed record ProtocolTokens(byte[] Ready, byte[] Ack, byte[] Error);

/// <summary>The payload every harness message carries: a marker, the publish time in Stopwatch ticks, then padding.</summary>
internal static class Stamp
{
    public const int Digits = 19;

    public static ReadOnlySpan<byte> Marker => "~@"u8;

    /// <summary>Writes a stamped payload of exactly <paramref name="size"/> bytes (at least 21) into <paramref name="destination"/>.</summary>
    public static void Write(Span<byte> destination, int size, long timestamp)
    {
        Marker.CopyTo(destination);
        if (!Utf8Formatter.TryFormat(timestamp, destination[Marker.Length..], out _, new System.Buffers.StandardFormat('D', Digits)))
        {
            throw new ArgumentOutOfRangeException(nameof(timestamp));
        }

        destination[(Marker.Length + Digits)..size].Fill((byte)'x');
    }

    /// <summary>The smallest payload that still carries a stamp.</summary>
    public static int MinimumSize => Marker.Length + Digits;
}

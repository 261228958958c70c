using System.Buffers.Binary;
using System.Collections.Concurrent;

namespace Relay.Bench.Micro.Delivery;

/// <summary>Counts whole server WebSocket frames (unmasked) in a byte stream fed in pieces of any size.</summary>
internal sealed class FrameCounter
{
    private readonly byte[] _header = new byte[10];
    private int _headerBytes;
    private long _payloadLeft = -1;
    private byte[]? _payload;
    private int _payloadBytes;

    public int Feed(ReadOnlySpan<byte> data, ConcurrentQueue<byte[]>? captured)
    {
        var frames = 0;
        while (true)
        {
            if (_payloadLeft < 0)
            {
                // Reading a header: two bytes, then the extended length they announce.
                var size = _headerBytes < 2 ? 2 : HeaderSize(_header[1]);
                var take = Math.Min(size - _headerBytes, data.Length);
                data[..take].CopyTo(_header.AsSpan(_headerBytes));
                _headerBytes += take;
                data = data[take..];
                if (_headerBytes < size || (size == 2 && HeaderSize(_header[1]) > 2))
                {
                    if (data.IsEmpty)
                    {
                        return frames;
                    }

                    continue;
                }

                var length = _header[1] & 0x7F;
                _payloadLeft = length == 126 ? BinaryPrimitives.ReadUInt16BigEndian(_header.AsSpan(2))
                    : length == 127 ? (long)BinaryPrimitives.ReadUInt64BigEndian(_header.AsSpan(2))
                    : length;
                _headerBytes = 0;
                _payload = captured is null ? null : new byte[_payloadLeft];
                _payloadBytes = 0;
            }

            var step = (int)Math.Min(_payloadLeft, data.Length);
            if (_payload is not null)
            {
                data[..step].CopyTo(_payload.AsSpan(_payloadBytes));
                _payloadBytes += step;
            }

            data = data[step..];
            _payloadLeft -= step;
            if (_payloadLeft > 0)
            {
                return frames;
            }

            frames++;
            _payloadLeft = -1;
            if (_payload is not null)
            {
                captured?.Enqueue(_payload);
                _payload = null;
            }

            if (data.IsEmpty)
            {
                return frames;
            }
        }
    }

    private static int HeaderSize(byte second) => (second & 0x7F) switch
    {
        126 => 4,
        127 => 10,
        _ => 2,
    };
}

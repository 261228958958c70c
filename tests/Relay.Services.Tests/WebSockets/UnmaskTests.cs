using System.Buffers.Binary;
using Relay.Ingress.WebSockets;

namespace Relay.Services.Tests.WebSockets;

/// <summary>Unmasking a client frame (RFC 6455 §5.3) in blocks gives the bytes one byte at a time would.</summary>
public sealed class UnmaskTests
{
    [Fact]
    public void Unmask_EveryLengthAndOffset_MatchesByteWiseUnmasking()
    {
        byte[] key = [0x5a, 0xc3, 0x81, 0x7e];
        var mask = BinaryPrimitives.ReadUInt32LittleEndian(key);
        var random = new Random(42);
        for (var length = 0; length <= 300; length++)
        {
            for (var offset = 0; offset < 4; offset++)
            {
                var masked = new byte[length];
                random.NextBytes(masked);
                var expected = new byte[length];
                for (var i = 0; i < length; i++)
                {
                    expected[i] = (byte)(masked[i] ^ key[(offset + i) & 3]);
                }

                var actual = masked.AsSpan().ToArray();
                var next = PipeWebSocket.Unmask(actual, mask, offset);

                Assert.True(expected.AsSpan().SequenceEqual(actual), $"length {length}, offset {offset}");
                Assert.Equal((offset + length) & 3, next);
            }
        }
    }

    [Fact]
    public void Unmask_InPiecesOfAnyLength_MatchesUnmaskingAtOnce()
    {
        // A frame read in pieces (as it arrives) carries the mask's position from one piece to the next.
        byte[] key = [0x11, 0x22, 0x33, 0x44];
        var mask = BinaryPrimitives.ReadUInt32LittleEndian(key);
        var payload = new byte[1_000];
        new Random(7).NextBytes(payload);
        var whole = payload.AsSpan().ToArray();
        PipeWebSocket.Unmask(whole, mask, 0);

        foreach (var piece in new[] { 1, 3, 7, 9, 31, 33, 100 })
        {
            var pieces = payload.AsSpan().ToArray();
            var offset = 0;
            for (var start = 0; start < pieces.Length; start += piece)
            {
                offset = PipeWebSocket.Unmask(pieces.AsSpan(start, Math.Min(piece, pieces.Length - start)), mask, offset);
            }

            Assert.True(whole.AsSpan().SequenceEqual(pieces), $"pieces of {piece}");
        }
    }
}

using System.Text;
using Relay.Bench.Load;

namespace Relay.Bench.Tests;

public sealed class FrameReaderTests
{
    private static readonly ProtocolTokens Tokens = new("HELLO"u8.ToArray(), "ACK"u8.ToArray(), "ERR"u8.ToArray());

    private static byte[] ServerFrame(int opcode, byte[] payload)
    {
        var frame = new List<byte> { (byte)(0x80 | opcode) };
        if (payload.Length < 126)
        {
            frame.Add((byte)payload.Length);
        }
        else if (payload.Length <= ushort.MaxValue)
        {
            frame.Add(126);
            frame.Add((byte)(payload.Length >> 8));
            frame.Add((byte)payload.Length);
        }
        else
        {
            frame.Add(127);
            for (var shift = 56; shift >= 0; shift -= 8)
            {
                frame.Add((byte)((long)payload.Length >> shift));
            }
        }

        frame.AddRange(payload);
        return [.. frame];
    }

    [Fact]
    public void DataFrames_OfEveryLengthForm_ReachTheScanner_WhateverTheReadBoundaries()
    {
        var large = Encoding.ASCII.GetBytes(new string('x', 70_000) + "ACK");
        var medium = Encoding.ASCII.GetBytes(new string('y', 300) + "ACK");
        byte[] stream = [.. ServerFrame(1, "HELLO ACK"u8.ToArray()), .. ServerFrame(0xA, "ACK"u8.ToArray()), .. ServerFrame(1, medium), .. ServerFrame(2, large), .. ServerFrame(1, [])];
        foreach (var chunk in new[] { 1, 2, 3, 7, 125, 4096, stream.Length })
        {
            var scanner = new StreamScanner(Tokens);
            var reader = new BenchSocket.FrameReader(scanner, null);
            for (var offset = 0; offset < stream.Length; offset += chunk)
            {
                Assert.True(reader.Feed(stream.AsSpan(offset, Math.Min(chunk, stream.Length - offset))));
            }

            // The pong's payload is a control frame: not data, so its "ACK" is not counted.
            Assert.Equal(3, scanner.Acks);
            Assert.Equal(1, scanner.Readies);
        }
    }

    [Fact]
    public void CloseFrame_EndsTheStream()
    {
        var reader = new BenchSocket.FrameReader(new StreamScanner(Tokens), null);
        Assert.True(reader.Feed(ServerFrame(1, "ACK"u8.ToArray())));
        Assert.False(reader.Feed(ServerFrame(8, [0x03, 0xE8])));
    }
}

using System.Buffers;
using System.Buffers.Text;

namespace Relay.Redis;

/// <summary>Writes commands the way Redis reads them: an array of bulk strings.</summary>
public static class RespWriter
{
    /// <summary>Writes <c>*N</c> then the command name and each argument as bulk strings.</summary>
    public static void WriteCommand(IBufferWriter<byte> writer, string command, ReadOnlySpan<RedisArg> args)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentException.ThrowIfNullOrEmpty(command);
        WriteLengthLine(writer, (byte)'*', args.Length + 1);
        RedisArg.FromString(command).WriteTo(writer);
        foreach (var arg in args)
        {
            arg.WriteTo(writer);
        }
    }

    /// <summary>The command as one array, for a command that must wait before it can be written.</summary>
    public static byte[] Encode(string command, ReadOnlySpan<RedisArg> args)
    {
        var buffer = new ArrayBufferWriter<byte>(64);
        WriteCommand(buffer, command, args);
        return buffer.WrittenSpan.ToArray();
    }

    internal static void WriteLengthLine(IBufferWriter<byte> writer, byte prefix, long length)
    {
        var span = writer.GetSpan(24);
        span[0] = prefix;
        Utf8Formatter.TryFormat(length, span[1..], out var written);
        span[written + 1] = (byte)'\r';
        span[written + 2] = (byte)'\n';
        writer.Advance(written + 3);
    }
}

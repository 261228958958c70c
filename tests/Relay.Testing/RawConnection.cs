using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Relay.Testing;

/// <summary>An HTTP response head (and body, when it has a length) as read off a raw connection.</summary>
public sealed record RawResponse(int Status, IReadOnlyDictionary<string, string> Headers, string Body)
{
    /// <summary>A header's value (repeated headers joined with a comma); null when absent.</summary>
    public string? Header(string name) => Headers.TryGetValue(name, out var value) ? value : null;
}

/// <summary>
/// A TCP connection to the server that sends exactly the bytes it is given: for requests and WebSocket frames that
/// well-behaved clients never send. Every read has a timeout.
/// </summary>
public sealed class RawConnection : IAsyncDisposable
{
    private readonly TcpClient _tcp;
    private NetworkStream _stream = null!;

    private RawConnection(IPAddress? source) => _tcp = source is null ? new TcpClient() : new TcpClient(new IPEndPoint(source, 0));

    /// <summary>
    /// Connects to the server's port on the loopback address, from <paramref name="source"/> when given (any of
    /// 127.0.0.0/8: a second loopback address is a second client address to the server).
    /// </summary>
    public static async Task<RawConnection> ConnectAsync(Uri baseAddress, IPAddress? source = null)
    {
        ArgumentNullException.ThrowIfNull(baseAddress);
        var connection = new RawConnection(source);
        await connection._tcp.ConnectAsync(IPAddress.Loopback, baseAddress.Port).WaitAsync(TestSocket.DefaultTimeout).ConfigureAwait(false);
        connection._stream = connection._tcp.GetStream();
        return connection;
    }

    /// <summary>A realtime upgrade request with the test key; <paramref name="replace"/> edits its text before it is sent.</summary>
    public static string UpgradeRequest(string extraHeaders = "", Func<string, string>? replace = null)
    {
        var request = $"GET /v1/realtime?key={Uri.EscapeDataString(RelayServer.Key)} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + $"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extraHeaders}\r\n";
        return replace is null ? request : replace(request);
    }

    /// <summary>Sends text as Latin-1 bytes (every char below 256 is its own byte, control characters included).</summary>
    public Task SendAsync(string text) => SendAsync(Encoding.Latin1.GetBytes(text));

    /// <summary>Sends bytes as they are.</summary>
    public Task SendAsync(ReadOnlyMemory<byte> bytes) => _stream.WriteAsync(bytes).AsTask().WaitAsync(TestSocket.DefaultTimeout);

    /// <summary>Ends the sending side (a TCP half-close): the server reads the end of the stream, and can still answer.</summary>
    public void EndSending() => _tcp.Client.Shutdown(SocketShutdown.Send);

    /// <summary>Reads a response head, and the body when the response gives its length (none for a 101).</summary>
    public async Task<RawResponse> ReadResponseAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TestSocket.DefaultTimeout);
        var head = new StringBuilder();
        var one = new byte[1];
        while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
        {
            if (await _stream.ReadAsync(one, cts.Token).ConfigureAwait(false) == 0)
            {
                throw new EndOfStreamException("the server closed the connection before a whole response head: " + head);
            }

            head.Append((char)one[0]);
        }

        var lines = head.ToString().Split("\r\n");
        var status = int.Parse(lines[0].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var line in lines.Skip(1).Where(static l => l.Length > 0))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            var (name, value) = (line[..colon], line[(colon + 1)..].Trim());
            headers[name] = headers.TryGetValue(name, out var earlier) ? earlier + "," + value : value;
        }

        var body = new MemoryStream();
        if (status != 101 && headers.TryGetValue("Content-Length", out var length))
        {
            var bytes = new byte[int.Parse(length, System.Globalization.CultureInfo.InvariantCulture)];
            await _stream.ReadExactlyAsync(bytes, cts.Token).ConfigureAwait(false);
            body.Write(bytes);
        }
        else if (status != 101 && headers.TryGetValue("Transfer-Encoding", out var encoding) && encoding.Contains("chunked", StringComparison.OrdinalIgnoreCase))
        {
            // Chunks up to the last (empty) one; no trailers are expected.
            for (var chunks = 0; chunks < 10_000; chunks++)
            {
                var size = Convert.ToInt32(await ReadLineAsync(cts.Token).ConfigureAwait(false), 16);
                var chunk = new byte[size + 2];
                await _stream.ReadExactlyAsync(chunk, cts.Token).ConfigureAwait(false);
                body.Write(chunk, 0, size);
                if (size == 0)
                {
                    break;
                }
            }
        }

        return new RawResponse(status, headers, Encoding.UTF8.GetString(body.ToArray()));
    }

    private async Task<string> ReadLineAsync(CancellationToken cancellationToken)
    {
        var line = new StringBuilder();
        var one = new byte[1];
        while (!line.ToString().EndsWith("\r\n", StringComparison.Ordinal))
        {
            if (await _stream.ReadAsync(one, cancellationToken).ConfigureAwait(false) == 0)
            {
                throw new EndOfStreamException("the server closed the connection inside a chunked body");
            }

            line.Append((char)one[0]);
        }

        return line.ToString(0, line.Length - 2);
    }

    /// <summary>Sends one WebSocket frame (masked, as a client must, unless told otherwise).</summary>
    public Task SendFrameAsync(int opcode, byte[] payload, bool masked = true, bool final = true) => SendAsync(Frame(opcode, payload, masked, final));

    /// <summary>The bytes of one WebSocket frame.</summary>
    public static byte[] Frame(int opcode, byte[] payload, bool masked = true, bool final = true)
    {
        ArgumentNullException.ThrowIfNull(payload);
        var frame = new List<byte> { (byte)((final ? 0x80 : 0) | opcode) };
        var maskBit = masked ? 0x80 : 0;
        if (payload.Length < 126)
        {
            frame.Add((byte)(maskBit | payload.Length));
        }
        else
        {
            frame.Add((byte)(maskBit | 126));
            frame.Add((byte)(payload.Length >> 8));
            frame.Add((byte)payload.Length);
        }

        byte[] mask = [1, 2, 3, 4];
        if (masked)
        {
            frame.AddRange(mask);
        }

        for (var i = 0; i < payload.Length; i++)
        {
            frame.Add(masked ? (byte)(payload[i] ^ mask[i % 4]) : payload[i]);
        }

        return [.. frame];
    }

    /// <summary>Reads one server frame (which must be unmasked).</summary>
    public async Task<(int Opcode, byte[] Payload)> ReadFrameAsync()
    {
        var header = await ReadExactlyAsync(2).ConfigureAwait(false);
        if ((header[1] & 0x80) != 0)
        {
            throw new InvalidDataException("a server frame was masked");
        }

        long length = header[1] & 0x7F;
        if (length == 126)
        {
            length = BinaryPrimitives.ReadUInt16BigEndian(await ReadExactlyAsync(2).ConfigureAwait(false));
        }
        else if (length == 127)
        {
            length = (long)BinaryPrimitives.ReadUInt64BigEndian(await ReadExactlyAsync(8).ConfigureAwait(false));
        }

        return (header[0] & 0x0F, await ReadExactlyAsync((int)length).ConfigureAwait(false));
    }

    /// <summary>Reads frames until one with <paramref name="opcode"/> (at most 100 frames).</summary>
    public async Task<(int Opcode, byte[] Payload)> ReadFrameOfAsync(int opcode)
    {
        for (var i = 0; i < 100; i++)
        {
            var frame = await ReadFrameAsync().ConfigureAwait(false);
            if (frame.Opcode == opcode)
            {
                return frame;
            }
        }

        throw new InvalidDataException($"no frame with opcode {opcode} in 100 frames");
    }

    /// <summary>Reads (and drops) whatever comes until the server ends the connection; false if it is still open after <paramref name="timeout"/>.</summary>
    /// <summary>
    /// Reads until the server's side ends: "end" when the stream ends (the server closed, or shut its sending side),
    /// "reset" when the connection was reset, "open" when neither happened within <paramref name="timeout"/>.
    /// </summary>
    public async Task<string> HowItEndsAsync(TimeSpan timeout)
    {
        var buffer = new byte[4096];
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (await _stream.ReadAsync(buffer, cts.Token).ConfigureAwait(false) > 0)
            {
            }

            return "end";
        }
        catch (IOException)
        {
            return "reset";
        }
        catch (OperationCanceledException)
        {
            return "open";
        }
    }

    public async Task<bool> EndsWithinAsync(TimeSpan timeout)
    {
        var buffer = new byte[4096];
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (await _stream.ReadAsync(buffer, cts.Token).ConfigureAwait(false) > 0)
            {
            }

            return true;
        }
        catch (IOException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private async Task<byte[]> ReadExactlyAsync(int count)
    {
        var buffer = new byte[count];
        await _stream.ReadExactlyAsync(buffer).AsTask().WaitAsync(TestSocket.DefaultTimeout).ConfigureAwait(false);
        return buffer;
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        _tcp.Dispose();
        return ValueTask.CompletedTask;
    }
}

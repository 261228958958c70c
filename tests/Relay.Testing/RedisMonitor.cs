using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Relay.Testing;

/// <summary>
/// redis-server's <c>MONITOR</c> over a raw socket: every command the server runs from the moment it starts, as the
/// lines Redis prints (a script's own calls included, tagged <c>lua</c>), so a test can count the round trips a Relay
/// made for one request.
/// </summary>
public sealed class RedisMonitor : IAsyncDisposable
{
    private readonly TcpClient _client;
    private readonly int _port;
    private readonly List<string> _lines = [];
    private readonly Task _reading;

    private RedisMonitor(TcpClient client, int port, StreamReader reader)
    {
        _client = client;
        _port = port;
        _reading = ReadAsync(reader);
    }

    /// <summary>Starts monitoring the redis-server on loopback <paramref name="port"/> (no password); returns once Redis said OK.</summary>
    public static async Task<RedisMonitor> StartAsync(int port)
    {
        var client = new TcpClient();
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await client.ConnectAsync(IPAddress.Loopback, port, timeout.Token).ConfigureAwait(false);
            var stream = client.GetStream();
            await stream.WriteAsync("MONITOR\r\n"u8.ToArray(), timeout.Token).ConfigureAwait(false);
            var reader = new StreamReader(stream, Encoding.UTF8);
            var ok = await reader.ReadLineAsync(timeout.Token).ConfigureAwait(false);
            if (ok != "+OK")
            {
                throw new InvalidOperationException($"redis-server on port {port} answered MONITOR with '{ok}'");
            }

            return new RedisMonitor(client, port, reader);
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The commands Redis ran since the start, up to and including every command sent to it before this call (a marker
    /// sent now on another connection shows up after them: Redis runs one command at a time).
    /// </summary>
    public async Task<IReadOnlyList<string>> UntilNowAsync(TimeSpan timeout)
    {
        var marker = "relay-monitor-" + Guid.NewGuid().ToString("N");
        Check(await RedisCommand.SendAsync(_port, "ECHO", marker).ConfigureAwait(false) != "", "redis-server did not answer ECHO");
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            lock (_lines)
            {
                var at = _lines.FindIndex(line => line.Contains(marker, StringComparison.Ordinal));
                if (at >= 0)
                {
                    return _lines.GetRange(0, at);
                }
            }

            Check(DateTime.UtcNow < deadline && !_reading.IsCompleted, $"MONITOR never showed the marker ECHO within {timeout}");
            await Task.Delay(20).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _client.Dispose();
        await _reading.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    private static void Check(bool condition, string failure)
    {
        if (!condition)
        {
            throw new InvalidOperationException(failure);
        }
    }

    private async Task ReadAsync(StreamReader reader)
    {
        using (reader)
        {
            try
            {
                while (await reader.ReadLineAsync().ConfigureAwait(false) is { } line)
                {
                    lock (_lines)
                    {
                        _lines.Add(line);
                    }
                }
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException)
            {
                // Disposed.
            }
        }
    }
}

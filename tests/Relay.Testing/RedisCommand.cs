using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Relay.Testing;

/// <summary>
/// One Redis command over a raw socket, for fixtures that watch servers a client library would hide or re-route
/// (a Sentinel, a Cluster node, a replica): the reply as text, or "" when the server does not answer within 2 s.
/// </summary>
public static class RedisCommand
{
    public static async Task<string> SendAsync(int port, params string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        try
        {
            using var client = new TcpClient();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await client.ConnectAsync(IPAddress.Loopback, port, timeout.Token);
            var stream = client.GetStream();
            var command = new StringBuilder().Append('*').Append(args.Length).Append("\r\n");
            foreach (var arg in args)
            {
                command.Append('$').Append(Encoding.UTF8.GetByteCount(arg)).Append("\r\n").Append(arg).Append("\r\n");
            }

            await stream.WriteAsync(Encoding.UTF8.GetBytes(command.ToString()), timeout.Token);
            var buffer = new byte[65536];
            var total = 0;

            // Replies here are small; read what arrives within a moment of the first bytes.
            total += await stream.ReadAsync(buffer.AsMemory(total), timeout.Token);
            await Task.Delay(20, timeout.Token);
            while (client.Available > 0 && total < buffer.Length)
            {
                total += await stream.ReadAsync(buffer.AsMemory(total), timeout.Token);
            }

            return Encoding.UTF8.GetString(buffer, 0, total);
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
        {
            return "";
        }
    }
}

using System.Net;
using System.Net.Sockets;

namespace Relay.Testing;

/// <summary>
/// A loopback TCP forwarder in front of a server (a redis-server), so one client's path to it can be cut as a crash or a
/// partition would cut it: <see cref="Cut"/> resets every forwarded connection and every new one until
/// <see cref="Restore"/>, while other clients of the server carry on; <see cref="DropReplies"/> lets requests through
/// and loses what the server answers (a crash between the server's work and its answer reaching the client); new
/// connections can be moved to another server (<see cref="TargetPort"/>).
/// </summary>
public sealed class TcpForwarder : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private volatile int _target;
    private readonly List<Socket> _sockets = [];
    private readonly CancellationTokenSource _stopping = new();
    private volatile bool _cut;
    private volatile bool _dropReplies;
    private readonly Task _accepting;

    private TcpForwarder(int target)
    {
        _target = target;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    /// <summary>The port clients connect to instead of the server's.</summary>
    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>Where new connections go; set it to move them, as a load balancer that took a dead server out of its pool.</summary>
    public int TargetPort
    {
        get => _target;
        set => _target = value;
    }

    /// <summary>Forwards a free loopback port to <paramref name="targetPort"/> on loopback.</summary>
    public static TcpForwarder Start(int targetPort) => new(targetPort);

    /// <summary>Resets every forwarded connection, and each new one until <see cref="Restore"/>: the clients behind it lose the server.</summary>
    public void Cut()
    {
        _cut = true;
        lock (_sockets)
        {
            foreach (var socket in _sockets)
            {
                Reset(socket);
            }

            _sockets.Clear();
        }
    }

    /// <summary>Forwards new connections again (and the server's answers).</summary>
    public void Restore() => (_cut, _dropReplies) = (false, false);

    /// <summary>From now on what the server sends is read and dropped: its clients hear nothing more, their requests still reach it.</summary>
    public void DropReplies() => _dropReplies = true;

    public async ValueTask DisposeAsync()
    {
        Cut();
        await _stopping.CancelAsync();
        _listener.Stop();
        await _accepting.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stopping.Dispose();
    }

    private static void Reset(Socket socket)
    {
        try
        {
            socket.LingerState = new LingerOption(true, 0);
        }
        catch (ObjectDisposedException)
        {
            // Reset already (the other pump of its pair, or a cut).
        }

        socket.Dispose();
    }

    private async Task AcceptAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptSocketAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            if (_cut)
            {
                Reset(client);
                continue;
            }

            var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await server.ConnectAsync(IPAddress.Loopback, _target, _stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException)
            {
                client.Dispose();
                server.Dispose();
                continue;
            }

            lock (_sockets)
            {
                if (_cut)
                {
                    Reset(client);
                    Reset(server);
                    continue;
                }

                _sockets.Add(client);
                _sockets.Add(server);
            }

            _ = PumpAsync(client, server, replies: false);
            _ = PumpAsync(server, client, replies: true);
        }
    }

    private async Task PumpAsync(Socket from, Socket to, bool replies)
    {
        var buffer = new byte[16384];
        try
        {
            int read;
            while ((read = await from.ReceiveAsync(buffer, SocketFlags.None).ConfigureAwait(false)) > 0)
            {
                if (replies && _dropReplies)
                {
                    continue;
                }

                await to.SendAsync(buffer.AsMemory(0, read), SocketFlags.None).ConfigureAwait(false);
            }

            to.Shutdown(SocketShutdown.Send);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Cut, or a side went away (a killed server resets its connections): the other side is reset too, as a proxy
            // would, or its client would wait on a connection nothing answers.
            Reset(to);
        }
    }
}

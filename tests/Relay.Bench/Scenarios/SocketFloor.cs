using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Relay.Bench.Scenarios;

/// <summary>
/// What holding an idle TCP connection costs a .NET process before any server state: a child process accepts
/// connections from this one on loopback and keeps each as a bare descriptor, as a <see cref="SafeSocketHandle"/>, or as
/// a <see cref="Socket"/> (what Relay's transports keep), and reports its resident memory per connection, taken as the
/// idle scenario takes it (RSS after, less RSS before) but with a compacting collection before each reading, so only what
/// the connections hold counts. The floor under the idle scenario's figure for any design that keeps a Socket object.
/// </summary>
internal static class SocketFloor
{
    /// <summary>How the child keeps each accepted connection.</summary>
    public static readonly string[] Modes = ["descriptor", "handle", "socket"];

    /// <summary>Runs each mode with <paramref name="connections"/> connections and prints a line per mode; returns the bytes per connection by mode.</summary>
    public static async Task<Dictionary<string, double>> RunAsync(int connections, Progress progress)
    {
        var perMode = new Dictionary<string, double>();
        foreach (var mode in Modes)
        {
            perMode[mode] = await RunModeAsync(mode, connections, progress).ConfigureAwait(false);
            progress.Say($"{mode}: {perMode[mode]:0} B per connection ({connections:N0} connections)");
        }

        return perMode;
    }

    private static async Task<double> RunModeAsync(string mode, int connections, Progress progress)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var arg in (string[])[typeof(SocketFloor).Assembly.Location, "socket-floor-server", "--mode", mode, "--count", connections.ToString(CultureInfo.InvariantCulture)])
        {
            start.ArgumentList.Add(arg);
        }

        using var server = Process.Start(start) ?? throw new InvalidOperationException("could not start the socket-floor server process");
        var clients = new List<Socket>(connections);
        try
        {
            var first = await ReadLineAsync(server) ?? throw new InvalidOperationException("the socket-floor server ended before it listened");
            var port = int.Parse(first["port ".Length..], CultureInfo.InvariantCulture);
            for (var i = 0; i < connections; i++)
            {
                var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                clients.Add(client);
                await client.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port)).ConfigureAwait(false);
                progress.Count($"{mode}: connected", i + 1, connections);
            }

            var result = await ReadLineAsync(server) ?? throw new InvalidOperationException("the socket-floor server ended before it measured");
            return double.Parse(result["bytes ".Length..], CultureInfo.InvariantCulture);
        }
        finally
        {
            foreach (var client in clients)
            {
                client.Dispose();
            }

            if (!server.HasExited)
            {
                server.Kill();
            }

            await server.WaitForExitAsync().ConfigureAwait(false);
        }
    }

    private static Task<string?> ReadLineAsync(Process server) =>
        server.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromMinutes(2));

    /// <summary>
    /// The child: listens on a free loopback port (prints <c>port N</c>), accepts <paramref name="count"/> connections
    /// keeping each as <paramref name="mode"/> says, and prints <c>bytes B</c>, its RSS growth per connection.
    /// </summary>
    public static int Serve(string mode, int count)
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(4096);
        var descriptors = new int[count];
        var handles = new List<SafeSocketHandle>(mode == "handle" ? count : 0);
        var sockets = new List<Socket>(mode == "socket" ? count : 0);
        var before = SettledRss();
        Console.WriteLine($"port {((IPEndPoint)listener.LocalEndPoint!).Port}");
        for (var i = 0; i < count; i++)
        {
            if (mode == "socket")
            {
                sockets.Add(listener.Accept());
                continue;
            }

            var descriptor = Native.Accept((int)listener.Handle, IntPtr.Zero, IntPtr.Zero);
            if (descriptor < 0)
            {
                throw new InvalidOperationException($"accept failed (errno {Marshal.GetLastPInvokeError()})");
            }

            if (mode == "handle")
            {
                handles.Add(new SafeSocketHandle(descriptor, ownsHandle: true));
            }
            else
            {
                descriptors[i] = descriptor;
            }
        }

        Thread.Sleep(TimeSpan.FromSeconds(1));
        var after = SettledRss();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"bytes {(after - before) / (double)count:0.0}"));
        GC.KeepAlive(descriptors);
        GC.KeepAlive(handles);
        GC.KeepAlive(sockets);
        return 0;
    }

    // The process's resident memory after a blocking, compacting collection of every generation.
    private static long SettledRss()
    {
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        return Targets.ServerProcess.StatusNumber(Environment.ProcessId, "VmRSS:") * 1024;
    }

    private static class Native
    {
        // accept(2) without the peer's address: a descriptor and nothing else.
        [DllImport("libc", EntryPoint = "accept", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int Accept(int socket, IntPtr address, IntPtr addressLength);
    }
}

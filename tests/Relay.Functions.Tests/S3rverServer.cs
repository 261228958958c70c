using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Amazon.Runtime;
using Amazon.S3;

namespace Relay.Functions.Tests;

/// <summary>
/// A real S3-compatible server: npm's <c>s3rver</c> (installed by <c>npm ci --prefix tests/s3rver</c>, which test.sh
/// runs), started on a free loopback port with one bucket and a data folder of its own, stopped and removed after.
/// A missing s3rver fails the test with what to run.
/// </summary>
internal sealed class S3rverServer : IAsyncDisposable
{
    /// <summary>s3rver's fixed credentials: it checks signatures made with them.</summary>
    public const string AccessKeyId = "S3RVER";

    /// <summary>The secret that goes with <see cref="AccessKeyId"/>.</summary>
    public const string SecretAccessKey = "S3RVER";

    private readonly string _script;
    private readonly string _directory;
    private readonly int _port;
    private Process _process = null!;

    private S3rverServer(string script, string directory, int port, string bucket)
    {
        _script = script;
        _directory = directory;
        _port = port;
        ServiceUrl = $"http://127.0.0.1:{port}";
        Bucket = bucket;
    }

    public string ServiceUrl { get; }

    public string Bucket { get; }

    public static async Task<S3rverServer> StartAsync(string bucket)
    {
        var script = Path.Combine(RepositoryRoot(), "tests", "s3rver", "node_modules", "s3rver", "bin", "s3rver.js");
        if (!File.Exists(script))
        {
            throw new InvalidOperationException($"s3rver is not installed ({script} is missing): run 'npm ci --prefix tests/s3rver' (./test.sh does).");
        }

        var server = new S3rverServer(script, Directory.CreateTempSubdirectory("relay-s3rver-").FullName, FreePort(), bucket);
        try
        {
            await server.RunAsync();
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }

        return server;
    }

    /// <summary>Stops the server (S3 is away); its objects stay on disk.</summary>
    public void Stop()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(10_000);
        }
    }

    /// <summary>Starts it again on the same port with the same objects.</summary>
    public Task StartAgainAsync() => RunAsync();

    private async Task RunAsync()
    {
        var start = new ProcessStartInfo("node", [_script, "-d", _directory, "-a", "127.0.0.1", "-p", _port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-s", "--configure-bucket", Bucket])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        _process?.Dispose();
        _process = Process.Start(start) ?? throw new InvalidOperationException("node did not start");
        _process.OutputDataReceived += static (_, _) => { };
        _process.ErrorDataReceived += static (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        for (var i = 0; i < 200; i++)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"s3rver exited with {_process.ExitCode} at start");
            }

            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, _port).WaitAsync(TimeSpan.FromSeconds(1));
                return;
            }
            catch (Exception e) when (e is SocketException or TimeoutException)
            {
                await Task.Delay(50);
            }
        }

        throw new TimeoutException("s3rver did not listen within 10 s");
    }

    /// <summary>A client of this server (path-style, its credentials).</summary>
    public AmazonS3Client Client() => new(new BasicAWSCredentials(AccessKeyId, SecretAccessKey), new AmazonS3Config
    {
        ServiceURL = ServiceUrl,
        ForcePathStyle = true,
        AuthenticationRegion = "us-east-1",
        RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
        ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
    });

    public ValueTask DisposeAsync()
    {
        try
        {
            if (_process is not null)
            {
                Stop();
            }
        }
        catch (InvalidOperationException)
        {
        }

        _process?.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }

        return ValueTask.CompletedTask;
    }

    internal static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Relay.Cloud.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException("the repository root (Relay.Cloud.sln) is not above " + AppContext.BaseDirectory);
    }

    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

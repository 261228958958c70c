using System.Runtime.InteropServices;
using System.Text;

namespace Relay.Testing;

/// <summary>
/// librdkafka's mock cluster (the real Kafka protocol, in memory) from the librdkafka that Confluent.Kafka ships: its
/// brokers listen on loopback ports that Relay, test clients and <c>kcat</c> share. Topics are made with
/// <see cref="CreateTopic"/>; the mock answers no CreateTopics request.
/// </summary>
public sealed partial class KafkaMockCluster : IDisposable
{
    private const string Library = "librdkafka";

    /// <summary>
    /// The builds librdkafka.redist ships for glibc Linux, in the order Confluent.Kafka tries them: the first links
    /// libsasl2 (absent from a bare Debian), the second nothing beyond libc. Loading the same file as the client shares
    /// one copy of the library in the process.
    /// </summary>
    private static readonly string[] LinuxBuilds = ["librdkafka.so", "centos8-librdkafka.so"];

    private readonly nint _handle;
    private nint _cluster;

    private KafkaMockCluster(nint handle, nint cluster, string bootstrapServers)
    {
        _handle = handle;
        _cluster = cluster;
        BootstrapServers = bootstrapServers;
    }

    /// <summary>The brokers' <c>host:port</c> list, for <c>bootstrap.servers</c> and <c>kcat -b</c>.</summary>
    public string BootstrapServers { get; }

    static KafkaMockCluster() => NativeLibrary.SetDllImportResolver(typeof(KafkaMockCluster).Assembly, static (name, assembly, path) =>
    {
        if (name != Library || !OperatingSystem.IsLinux())
        {
            return 0;
        }

        var folder = Path.Combine(AppContext.BaseDirectory, "runtimes", RuntimeInformation.RuntimeIdentifier.StartsWith("linux-arm64", StringComparison.Ordinal) ? "linux-arm64" : "linux-x64", "native");
        var errors = new List<string>();
        foreach (var build in LinuxBuilds)
        {
            var file = Path.Combine(folder, build);
            if (NativeLibrary.TryLoad(file, out var handle))
            {
                return handle;
            }

            errors.Add(file);
        }

        throw new DllNotFoundException("none of librdkafka.redist's Linux builds loads: " + string.Join(", ", errors));
    });

    /// <summary>Starts a cluster of <paramref name="brokers"/> brokers on loopback.</summary>
    public static KafkaMockCluster Start(int brokers = 3)
    {
        var error = new byte[512];
        var conf = ConfNew();
        foreach (var (name, value) in new[] { ("client.id", "relay-test-mock-cluster"), ("log_level", "3") })
        {
            if (ConfSet(conf, name, value, error, error.Length) != 0)
            {
                throw new InvalidOperationException($"librdkafka refused {name}={value}: {Text(error)}");
            }
        }

        // The handle owns the cluster's bookkeeping; it takes the configuration when it is made.
        var handle = New(0, conf, error, error.Length);
        if (handle == 0)
        {
            throw new InvalidOperationException("rd_kafka_new failed: " + Text(error));
        }

        var cluster = MockClusterNew(handle, brokers);
        if (cluster == 0)
        {
            Destroy(handle);
            throw new InvalidOperationException("rd_kafka_mock_cluster_new failed");
        }

        // A group forms at once when its first consumer joins (a real broker waits 3 s for more members).
        MockGroupInitialRebalanceDelayMs(cluster, 0);
        var bootstraps = Marshal.PtrToStringUTF8(MockClusterBootstraps(cluster))!;
        return new KafkaMockCluster(handle, cluster, bootstraps);
    }

    /// <summary>Creates <paramref name="topic"/> with <paramref name="partitions"/> partitions.</summary>
    public void CreateTopic(string topic, int partitions)
    {
        var code = MockTopicCreate(_cluster, topic, partitions, 1);
        if (code != 0)
        {
            throw new InvalidOperationException($"rd_kafka_mock_topic_create({topic}, {partitions}) failed with error {code}");
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_cluster != 0)
        {
            MockClusterDestroy(_cluster);
            _cluster = 0;
            Destroy(_handle);
        }
    }

    private static string Text(byte[] error) => Encoding.UTF8.GetString(error, 0, Math.Max(0, Array.IndexOf(error, (byte)0)));

    [LibraryImport(Library, EntryPoint = "rd_kafka_conf_new")]
    private static partial nint ConfNew();

    [LibraryImport(Library, EntryPoint = "rd_kafka_conf_set", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int ConfSet(nint conf, string name, string value, [Out] byte[] error, nint errorSize);

    [LibraryImport(Library, EntryPoint = "rd_kafka_new")]
    private static partial nint New(int type, nint conf, [Out] byte[] error, nint errorSize);

    [LibraryImport(Library, EntryPoint = "rd_kafka_destroy")]
    private static partial void Destroy(nint handle);

    [LibraryImport(Library, EntryPoint = "rd_kafka_mock_cluster_new")]
    private static partial nint MockClusterNew(nint handle, int brokers);

    [LibraryImport(Library, EntryPoint = "rd_kafka_mock_cluster_destroy")]
    private static partial void MockClusterDestroy(nint cluster);

    [LibraryImport(Library, EntryPoint = "rd_kafka_mock_cluster_bootstraps")]
    private static partial nint MockClusterBootstraps(nint cluster);

    [LibraryImport(Library, EntryPoint = "rd_kafka_mock_topic_create", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MockTopicCreate(nint cluster, string topic, int partitions, int replicationFactor);

    [LibraryImport(Library, EntryPoint = "rd_kafka_mock_group_initial_rebalance_delay_ms")]
    private static partial void MockGroupInitialRebalanceDelayMs(nint cluster, int delayMs);
}

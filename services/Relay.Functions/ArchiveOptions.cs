namespace Relay.Functions;

/// <summary>The S3 history archive (<c>Relay:Functions:Archive</c>): off until <see cref="Bucket"/> is set.</summary>
public sealed class ArchiveOptions
{
    /// <summary>Default key prefix: keeps Relay's objects apart in a shared bucket.</summary>
    public const string DefaultPrefix = "relay/";

    /// <summary>Default region: S3's own default; S3-compatible servers ignore it.</summary>
    public const string DefaultRegion = "us-east-1";

    /// <summary>Default messages per object: a busy channel's minute in a few objects, each small enough to read whole.</summary>
    public const int DefaultMaxMessagesPerObject = 1000;

    /// <summary>Default bytes held for the archive before new messages are dropped (counted): minutes of a busy node.</summary>
    public const int DefaultMaxBufferedBytes = 64 * 1024 * 1024;

    /// <summary>Default time a message waits before its channel's batch is written: few objects, little held.</summary>
    public static readonly TimeSpan DefaultFlushInterval = TimeSpan.FromSeconds(30);

    /// <summary>The bucket; unset: no archive.</summary>
    public string? Bucket { get; set; }

    /// <summary>Prepended to every key.</summary>
    public string Prefix { get; set; } = DefaultPrefix;

    /// <summary>An S3-compatible endpoint (<c>http://127.0.0.1:4568</c>); unset: AWS S3 in <see cref="Region"/>.</summary>
    public string? ServiceUrl { get; set; }

    /// <summary>The region requests are signed for.</summary>
    public string Region { get; set; } = DefaultRegion;

    /// <summary>Path-style addressing (<c>endpoint/bucket/key</c>), which S3-compatible servers usually need.</summary>
    public bool ForcePathStyle { get; set; }

    /// <summary>The access key id; unset: <c>AWS_ACCESS_KEY_ID</c>.</summary>
    public string? AccessKeyId { get; set; }

    /// <summary>The secret key; unset: <c>AWS_SECRET_ACCESS_KEY</c>.</summary>
    public string? SecretAccessKey { get; set; }

    /// <summary>Only channels of these namespaces; empty: every channel.</summary>
    public IList<string> Namespaces { get; } = [];

    /// <summary>How long a channel's messages wait before they are written.</summary>
    public TimeSpan FlushInterval { get; set; } = DefaultFlushInterval;

    /// <summary>A channel's batch is written once it holds this many messages, without waiting.</summary>
    public int MaxMessagesPerObject { get; set; } = DefaultMaxMessagesPerObject;

    /// <summary>Message bytes held (waiting or failed to write) before new messages are dropped.</summary>
    public int MaxBufferedBytes { get; set; } = DefaultMaxBufferedBytes;

    /// <summary>Whether the archive is configured.</summary>
    public bool Enabled => !string.IsNullOrEmpty(Bucket);
}

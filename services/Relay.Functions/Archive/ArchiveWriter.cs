using System.Buffers;
using System.Text.Json;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Microsoft.Extensions.Options;
using Relay.Core.Messages;
using Relay.Functions.Hooks;

namespace Relay.Functions.Archive;

/// <summary>
/// Writes one archive object: a run of a channel's messages of one epoch as JSON lines (the fields a subscriber gets),
/// with <c>PutObject</c>. Shared by the archiver beside fan-out and the archive function the Lambda app serves.
/// </summary>
internal sealed class ArchiveWriter : IDisposable
{
    private readonly ArchiveOptions _options;
    private readonly Lazy<AmazonS3Client> _client;

    public ArchiveWriter(IOptions<FunctionsOptions> options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Value.Archive;
        _client = new Lazy<AmazonS3Client>(CreateClient);
    }

    /// <summary>Writes <paramref name="messages"/> (one channel, one epoch, in seq order) to <paramref name="key"/>.</summary>
    public async Task WriteAsync(string key, IReadOnlyList<RelayMessage> messages, CancellationToken cancellationToken)
    {
        using var body = new MemoryStream(Lines(messages));
        await _client.Value.PutObjectAsync(new PutObjectRequest
        {
            BucketName = _options.Bucket,
            Key = key,
            InputStream = body,
            ContentType = "application/x-ndjson",
            UseChunkEncoding = false,
        }, cancellationToken).ConfigureAwait(false);
    }

    public void Dispose()
    {
        if (_client.IsValueCreated)
        {
            _client.Value.Dispose();
        }
    }

    private AmazonS3Client CreateClient()
    {
        var config = new AmazonS3Config
        {
            ForcePathStyle = _options.ForcePathStyle,
            AuthenticationRegion = _options.Region,

            // Checksums only where S3 requires them: S3-compatible servers do not all take the trailing checksums
            // the SDK sends by default since 4.0.
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
        };
        if (_options.ServiceUrl is { Length: > 0 } url)
        {
            config.ServiceURL = url;
        }
        else
        {
            config.RegionEndpoint = Amazon.RegionEndpoint.GetBySystemName(_options.Region);
        }

        var key = _options.AccessKeyId ?? Environment.GetEnvironmentVariable("AWS_ACCESS_KEY_ID");
        var secret = _options.SecretAccessKey ?? Environment.GetEnvironmentVariable("AWS_SECRET_ACCESS_KEY");
        var token = Environment.GetEnvironmentVariable("AWS_SESSION_TOKEN");

        // On Lambda the role's temporary credentials come as the three AWS_* variables.
        AWSCredentials credentials = _options.AccessKeyId is null && !string.IsNullOrEmpty(token)
            ? new SessionAWSCredentials(key, secret, token)
            : new BasicAWSCredentials(key, secret);
        return new AmazonS3Client(credentials, config);
    }

    private static byte[] Lines(IReadOnlyList<RelayMessage> messages)
    {
        var buffer = new ArrayBufferWriter<byte>(4096);
        foreach (var message in messages)
        {
            using (var writer = new Utf8JsonWriter(buffer))
            {
                writer.WriteStartObject();
                HookJson.WriteMessageFields(writer, message);
                writer.WriteEndObject();
            }

            buffer.Write("\n"u8);
        }

        return buffer.WrittenSpan.ToArray();
    }
}

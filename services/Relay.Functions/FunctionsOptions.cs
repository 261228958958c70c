namespace Relay.Functions;

/// <summary>
/// Options of hooks, webhooks, Lambda invocation and the S3 archive, bound from <c>Relay:Functions</c>. Everything is
/// off until configured: with no section, the hosts behave as they do without this module.
/// </summary>
public sealed class FunctionsOptions
{
    /// <summary>Configuration section.</summary>
    public const string SectionName = "Relay:Functions";

    /// <summary>Default hook calls in flight at once: far above what a healthy hook sees, low enough to bound memory when one hangs.</summary>
    public const int DefaultMaxPendingHooks = 10_000;

    /// <summary>Default largest hook answer read: a transform of a few 64 KiB messages fits; a runaway body does not.</summary>
    public const int DefaultMaxAnswerBytes = 1024 * 1024;

    /// <summary>Default tries of a webhook or after-publish call: about a minute of backoff at the default delays.</summary>
    public const int DefaultMaxAttempts = 5;

    /// <summary>Default events queued per webhook or for the after-publish hooks before new ones are dropped (counted, logged).</summary>
    public const int DefaultQueueCapacity = 10_000;

    /// <summary>Default bytes one queue may hold: a burst of large messages cannot take more memory than this per receiver.</summary>
    public const int DefaultQueueBytes = 64 * 1024 * 1024;

    /// <summary>Default dead letters kept in memory: enough to see what failed during an outage without growing for ever.</summary>
    public const int DefaultDeadLetterCapacity = 1_000;

    /// <summary>Default calls to one webhook (or to the after-publish hooks) at once: keeps order close to the event order and a receiver unflooded.</summary>
    public const int DefaultConcurrency = 4;

    /// <summary>Default wait before the second try; it doubles each try.</summary>
    public static readonly TimeSpan DefaultFirstRetryDelay = TimeSpan.FromSeconds(1);

    /// <summary>Default longest wait between tries.</summary>
    public static readonly TimeSpan DefaultMaxRetryDelay = TimeSpan.FromSeconds(30);

    /// <summary>Default time one webhook or after-publish call may take: a receiver is expected to queue and answer.</summary>
    public static readonly TimeSpan DefaultDeliveryTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Hooks of every namespace that has no entry of its own in <see cref="Namespaces"/> (and of channels without one).</summary>
    public FunctionNamespaceOptions Defaults { get; set; } = new();

    /// <summary>Hooks by namespace (the text before a channel's first <c>:</c>); an unset hook falls back to <see cref="Defaults"/>.</summary>
    public Dictionary<string, FunctionNamespaceOptions> Namespaces { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Before-publish hook calls in flight at once; a publish past it is treated as a failed call (its namespace's <see cref="HookOptions.OnFailure"/>).</summary>
    public int MaxPendingHooks { get; set; } = DefaultMaxPendingHooks;

    /// <summary>Largest hook or Lambda answer read; a longer one is garbage.</summary>
    public int MaxAnswerBytes { get; set; } = DefaultMaxAnswerBytes;

    /// <summary>Webhook receivers: each gets the events it names, signed with its secret.</summary>
    public IList<WebhookOptions> Webhooks { get; } = [];

    /// <summary>Tries of a webhook or after-publish call before it is dead-lettered.</summary>
    public int MaxAttempts { get; set; } = DefaultMaxAttempts;

    /// <summary>Wait before the second try; it doubles each try up to <see cref="MaxRetryDelay"/>.</summary>
    public TimeSpan FirstRetryDelay { get; set; } = DefaultFirstRetryDelay;

    /// <summary>Longest wait between tries.</summary>
    public TimeSpan MaxRetryDelay { get; set; } = DefaultMaxRetryDelay;

    /// <summary>Time one webhook or after-publish call may take before it counts as failed.</summary>
    public TimeSpan DeliveryTimeout { get; set; } = DefaultDeliveryTimeout;

    /// <summary>Events queued per webhook (and for the after-publish hooks) before new ones are dropped.</summary>
    public int QueueCapacity { get; set; } = DefaultQueueCapacity;

    /// <summary>Bytes of events queued per webhook (and for the after-publish hooks) before new ones are dropped.</summary>
    public int QueueBytes { get; set; } = DefaultQueueBytes;

    /// <summary>Calls to one webhook (or to the after-publish hooks) at once.</summary>
    public int Concurrency { get; set; } = DefaultConcurrency;

    /// <summary>Dead letters kept in memory (the oldest goes first).</summary>
    public int DeadLetterCapacity { get; set; } = DefaultDeadLetterCapacity;

    /// <summary>Credentials and endpoint for <c>lambda:</c> hook targets.</summary>
    public LambdaOptions Lambda { get; set; } = new();

    /// <summary>The S3 history archive.</summary>
    public ArchiveOptions Archive { get; set; } = new();

    /// <summary>Whether any hook is configured (else routing's authority is served undecorated).</summary>
    public bool HooksEnabled => Defaults.HasHook || Namespaces.Values.Any(static n => n.HasHook);

    /// <summary>Whether any webhook is configured.</summary>
    public bool WebhooksEnabled => Webhooks.Count > 0;
}

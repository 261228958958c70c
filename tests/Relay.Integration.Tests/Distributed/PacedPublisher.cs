using System.Diagnostics;
using Relay.Testing;

namespace Relay.Integration.Tests.Distributed;

/// <summary>
/// Publishes <c>first..last</c> over one realtime connection at a set rate, each with an idempotency id, up to 64 in
/// flight, and re-sends any not acknowledged within 3 s or refused, with the same id, until every one has its seq in
/// <c>acknowledged[n]</c>: the load a test kills processes under.
/// </summary>
internal static class PacedPublisher
{
    private const int MaxInFlight = 64;

    private static readonly TimeSpan ResendAfter = TimeSpan.FromSeconds(3);

    public static async Task PublishAsync(
        TestSocket publisher,
        long[] acknowledged,
        int first,
        int last,
        int perSecond,
        Func<int, string> channelOf,
        Action<string> log,
        CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var sentAt = new long[last + 1];
        var inFlight = 0;
        var replies = Task.Run(async () =>
        {
            var pending = last - first + 1;
            while (pending > 0)
            {
                var reply = await publisher.ReceiveAsync(TimeSpan.FromSeconds(30));
                if (!reply.TryGetProperty("ref", out var reference))
                {
                    continue;
                }

                var n = reference.GetInt32();
                if (reply.GetProperty("type").GetString() == "ok" && acknowledged[n] == 0)
                {
                    Volatile.Write(ref acknowledged[n], reply.GetProperty("seq").GetInt64());
                    pending--;
                }
                else if (reply.GetProperty("type").GetString() != "ok")
                {
                    log($"publish {n} refused: {reply.GetRawText()}");
                    Volatile.Write(ref sentAt[n], 0);
                }

                Interlocked.Decrement(ref inFlight);
            }
        }, cancellationToken);

        var next = first;
        while (!replies.IsCompleted)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var due = (int)Math.Min(last, first - 1 + (clock.ElapsedMilliseconds * perSecond / 1000));
            for (var n = first; n <= Math.Max(due, next - 1) && Volatile.Read(ref inFlight) < MaxInFlight; n++)
            {
                var sent = Volatile.Read(ref sentAt[n]);
                var isNew = n >= next;
                if (isNew || (Volatile.Read(ref acknowledged[n]) == 0 && (sent == 0 || clock.ElapsedMilliseconds - sent > ResendAfter.TotalMilliseconds)))
                {
                    Volatile.Write(ref sentAt[n], Math.Max(1, clock.ElapsedMilliseconds));
                    Interlocked.Increment(ref inFlight);
                    await publisher.SendAsync(new { type = "publish", @ref = n, channel = channelOf(n), id = $"m-{n}", data = new { n } });
                    next = Math.Max(next, n + 1);
                }
            }

            await Task.Delay(5, cancellationToken);
        }

        await replies;
    }
}

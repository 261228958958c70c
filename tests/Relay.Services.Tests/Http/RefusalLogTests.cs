using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Relay.Core.Protocol;
using Relay.Ingress.Http;
using Relay.Testing;

namespace Relay.Services.Tests.Http;

/// <summary>The bounded refusal log, on a clock whose window timer the test fires.</summary>
public sealed class RefusalLogTests
{
    /// <summary>A clock that hands out timers which fire only when told to.</summary>
    private sealed class ManualTimers : TimeProvider
    {
        public List<(TimerCallback Callback, object? State, bool Disposed)> Timers { get; } = [];

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            Timers.Add((callback, state, false));
            return new Timer(this, Timers.Count - 1);
        }

        /// <summary>Fires every timer not disposed.</summary>
        public void FireAll()
        {
            foreach (var (callback, state, disposed) in Timers.ToList())
            {
                if (!disposed)
                {
                    callback(state);
                }
            }
        }

        private sealed class Timer(ManualTimers owner, int index) : ITimer
        {
            public bool Change(TimeSpan dueTime, TimeSpan period) => true;

            public void Dispose() => owner.Timers[index] = owner.Timers[index] with { Disposed = true };

            public ValueTask DisposeAsync()
            {
                Dispose();
                return ValueTask.CompletedTask;
            }
        }
    }

    [Fact]
    public void RefusalsInOneWindow_AreOneLine_ThenACount_ThenANewWindow()
    {
        var capture = new LogCapture();
        using var loggers = LoggerFactory.Create(builder => builder.AddProvider(capture).SetMinimumLevel(LogLevel.Information));
        var clock = new ManualTimers();
        using var refusals = new RefusalLog(loggers.CreateLogger<RefusalLog>(), clock);
        var request = new DefaultHttpContext().Request;
        request.Method = "POST";
        request.Path = "/v1/channels/a/messages";

        for (var i = 0; i < 50; i++)
        {
            refusals.Refused(request, new RelayError(ErrorCodes.MessageTooLarge, "request body larger than 1048576 bytes"));
        }

        var first = Assert.Single(capture.Entries);
        Assert.Equal(1400, first.EventId.Id);
        Assert.Contains("POST /v1/channels/a/messages", first.Message, StringComparison.Ordinal);
        Assert.Contains("413 (41300): request body larger than 1048576 bytes", first.Message, StringComparison.Ordinal);

        clock.FireAll();
        Assert.Equal(2, capture.Entries.Count);
        Assert.Equal(1401, capture.Entries[1].EventId.Id);
        Assert.Contains("Refused 49 more", capture.Entries[1].Message, StringComparison.Ordinal);

        // A quiet window ends without a line; the next refusal opens a new one.
        refusals.Refused(request, RelayError.BadRequest("malformed JSON"));
        clock.FireAll();
        Assert.Equal(3, capture.Entries.Count);
        Assert.Equal(1400, capture.Entries[2].EventId.Id);
    }
}

using System.Text;
using Relay.Bench.Load;

namespace Relay.Bench.Tests;

public sealed class StreamScannerTests
{
    private static readonly ProtocolTokens Tokens = new("\"type\":\"connected\""u8.ToArray(), "\"type\":\"ok\""u8.ToArray(), "\"type\":\"error\""u8.ToArray());

    private static byte[] Stream(params long[] stamps)
    {
        var text = new StringBuilder("{\"type\":\"connected\"}{\"type\":\"ok\",\"ref\":1}");
        foreach (var stamp in stamps)
        {
            var payload = new byte[100];
            Stamp.Write(payload, 100, stamp);
            text.Append("{\"type\":\"message\",\"data\":\"").Append(Encoding.ASCII.GetString(payload)).Append("\"}{\"type\":\"ok\"}");
        }

        return Encoding.UTF8.GetBytes(text.ToString());
    }

    [Fact]
    public void EverySplitPoint_CountsEachStampAndTokenExactlyOnce()
    {
        var bytes = Stream(1234567890123, 42, 9_000_000_000_000_000_000);
        for (var split = 0; split <= bytes.Length; split++)
        {
            var seen = new List<long>();
            var scanner = new StreamScanner(Tokens, seen.Add);
            scanner.Scan(bytes.AsSpan(0, split));
            scanner.Scan(bytes.AsSpan(split));
            Assert.Equal([1234567890123, 42, 9_000_000_000_000_000_000], seen);
            Assert.Equal(4, scanner.Acks);
            Assert.Equal(1, scanner.Readies);
        }
    }

    [Fact]
    public void ByteByByte_CountsTheSameAsWhole()
    {
        var bytes = Stream(1, 2, 3, 4, 5);
        var scanner = new StreamScanner(Tokens);
        foreach (var b in bytes)
        {
            scanner.Scan([b]);
        }

        Assert.Equal(5, scanner.Stamps);
        Assert.Equal(6, scanner.Acks);
    }

    [Fact]
    public void AckCallback_ReceivesTheCountOfEachRead()
    {
        long acks = 0;
        var scanner = new StreamScanner(Tokens, onAcks: n => acks += n);
        scanner.Scan(Stream(7, 8));
        Assert.Equal(3, acks);
    }

    [Fact]
    public async Task WaitAsync_CompletesWhenTheConditionHolds_AndFailsOnAnErrorToken()
    {
        var scanner = new StreamScanner(Tokens);
        var waiting = scanner.WaitAsync(() => scanner.Acks >= 2, TimeSpan.FromSeconds(5), "two acks");
        scanner.Scan("{\"type\":\"ok\"}"u8);
        Assert.False(waiting.IsCompleted);
        scanner.Scan("{\"type\":\"ok\"}"u8);
        await waiting;

        var failing = scanner.WaitAsync(() => scanner.Acks >= 3, TimeSpan.FromSeconds(5), "a third ack");
        scanner.Scan("{\"type\":\"error\",\"code\":40300}"u8);
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => failing);
        Assert.Contains("40300", error.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// The answer a wait is for arrives on the receive loop while the wait is being set up (the bench's SUBSCRIBE then
    /// PINGREQ, answered at once): the wait must see it. Scanning counted the ack and then looked for a waiter without
    /// the lock the wait registers under, so an ack landing in between was never signalled, and the idle scenario
    /// reported "no answer to SUBSCRIBE within 30 s" for a client that had its PINGRESP (2 of 4 runs at 19,000 on the
    /// bare socket). Each round races one wait against one scan; a lost wake-up shows as a wait that does not end.
    /// </summary>
    [Fact]
    public async Task WaitAsync_AnswerScannedWhileTheWaitStarts_IsNeverMissed()
    {
        var answer = "{\"type\":\"ok\"}"u8.ToArray();
        const int Rounds = 5_000;
        for (var round = 0; round < Rounds; round++)
        {
            var scanner = new StreamScanner(Tokens);
            using var start = new Barrier(2);
            var scanning = Task.Factory.StartNew(
                () =>
                {
                    start.SignalAndWait();
                    scanner.Scan(answer);
                },
                CancellationToken.None,
                TaskCreationOptions.LongRunning,
                TaskScheduler.Default);
            start.SignalAndWait();

            // Bounded: a missed wake-up fails here after the timeout instead of hanging the run.
            var waited = await Record.ExceptionAsync(() => scanner.WaitAsync(() => scanner.Acks >= 1, TimeSpan.FromSeconds(10), "the ack"));
            await scanning;
            Assert.True(waited is null, $"round {round}: {waited?.Message} (the ack had been counted: {scanner.Acks})");
        }
    }

    [Fact]
    public async Task WaitAsync_TimesOutWithWhatItWaitedFor()
    {
        var scanner = new StreamScanner(Tokens);
        var error = await Assert.ThrowsAsync<TimeoutException>(() => scanner.WaitAsync(() => false, TimeSpan.FromMilliseconds(50), "the greeting"));
        Assert.Contains("the greeting", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Stamp_WritesMarkerDigitsAndPadding()
    {
        var payload = new byte[30];
        Stamp.Write(payload, 30, 12);
        Assert.Equal("~@0000000000000000012xxxxxxxxx", Encoding.ASCII.GetString(payload));
    }
}

using Relay.Ingress.Sending;

namespace Relay.Services.Tests.Sending;

/// <summary>The sweep counter behind both per-connection buffer trims (DirectSender's send buffer, SendQueue's ring).</summary>
public sealed class QuietSweepsTests
{
    [Fact]
    public void Sweep_IsTrueOnlyAfterTheNeededQuietSweepsInARow()
    {
        var quiet = default(QuietSweeps);
        Assert.False(quiet.Sweep(busy: false, 3));
        Assert.False(quiet.Sweep(busy: false, 3));
        Assert.True(quiet.Sweep(busy: false, 3));
        Assert.True(quiet.Sweep(busy: false, 3));
    }

    [Fact]
    public void UseOrBusyBetweenSweeps_StartsTheCountAgain()
    {
        var quiet = default(QuietSweeps);
        Assert.False(quiet.Sweep(busy: false, 2));
        quiet.Used();
        Assert.False(quiet.Sweep(busy: false, 2));
        Assert.False(quiet.Sweep(busy: false, 2));
        Assert.False(quiet.Sweep(busy: true, 2));
        Assert.False(quiet.Sweep(busy: false, 2));
        Assert.True(quiet.Sweep(busy: false, 2));
    }
}

namespace Relay.Bus.Redis.Tests;

/// <summary>Waits for a condition the test cannot await (a lease tick's effect), polling it every 50 ms.</summary>
internal static class Eventually
{
    public static async Task TrueAsync(Func<bool> condition, TimeSpan wait, string failure)
    {
        var deadline = DateTime.UtcNow + wait;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, failure);
            await Task.Delay(50);
        }
    }
}

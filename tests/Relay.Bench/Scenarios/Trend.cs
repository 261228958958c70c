namespace Relay.Bench.Scenarios;

/// <summary>Least-squares slope and averages over parts of a series (the soak's memory samples).</summary>
internal static class Trend
{
    /// <summary>The least-squares slope of <paramref name="y"/> against <paramref name="x"/>; 0 for fewer than two points.</summary>
    public static double Slope(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        if (x.Count != y.Count)
        {
            throw new ArgumentException("x and y need the same number of points");
        }

        if (x.Count < 2)
        {
            return 0;
        }

        double meanX = 0, meanY = 0;
        for (var i = 0; i < x.Count; i++)
        {
            meanX += x[i];
            meanY += y[i];
        }

        meanX /= x.Count;
        meanY /= x.Count;
        double covariance = 0, variance = 0;
        for (var i = 0; i < x.Count; i++)
        {
            covariance += (x[i] - meanX) * (y[i] - meanY);
            variance += (x[i] - meanX) * (x[i] - meanX);
        }

        return variance == 0 ? 0 : covariance / variance;
    }

    /// <summary>
    /// The lowest point of each run of <paramref name="window"/> consecutive points (the last run may be shorter): the
    /// floor of a sawtooth, such as a heap that grows between full collections and drops at each one.
    /// </summary>
    public static (List<double> X, List<double> Y) Floors(IReadOnlyList<double> x, IReadOnlyList<double> y, int window)
    {
        var floorX = new List<double>();
        var floorY = new List<double>();
        for (var start = 0; start < x.Count; start += window)
        {
            var lowest = start;
            for (var i = start + 1; i < Math.Min(x.Count, start + window); i++)
            {
                lowest = y[i] < y[lowest] ? i : lowest;
            }

            floorX.Add(x[lowest]);
            floorY.Add(y[lowest]);
        }

        return (floorX, floorY);
    }

    /// <summary>The samples of the first third, and those of the last third (at least one each).</summary>
    public static (IReadOnlyList<T> First, IReadOnlyList<T> Last) Thirds<T>(IReadOnlyList<T> samples)
    {
        var third = Math.Max(1, samples.Count / 3);
        return (samples.Take(third).ToList(), samples.Skip(samples.Count - third).ToList());
    }

    /// <summary>The samples after the first third: the part of a run whose slope says whether memory settled.</summary>
    public static IReadOnlyList<T> LastTwoThirds<T>(IReadOnlyList<T> samples) => samples.Skip(samples.Count / 3).ToList();
}

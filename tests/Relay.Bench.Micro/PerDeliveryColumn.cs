using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Relay.Bench.Micro;

/// <summary>
/// Divides a delivery benchmark's per-operation figure (one message) by its <c>Subscribers</c> parameter: the cost of
/// one delivery. Empty for benchmarks without that parameter.
/// </summary>
internal sealed class PerDeliveryColumn : IColumn
{
    public const string ParameterName = "Subscribers";

    private readonly bool _bytes;

    private PerDeliveryColumn(bool bytes) => _bytes = bytes;

    public static IColumn Time { get; } = new PerDeliveryColumn(bytes: false);

    public static IColumn Allocated { get; } = new PerDeliveryColumn(bytes: true);

    public string Id => nameof(PerDeliveryColumn) + (_bytes ? ".Bytes" : ".Time");

    public string ColumnName => _bytes ? "B/delivery" : "ns/delivery";

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Custom;

    public int PriorityInCategory => _bytes ? 1 : 0;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => _bytes
        ? "Bytes allocated per operation divided by Subscribers: per delivery (budget 0 in steady state)"
        : "Mean time per operation divided by Subscribers: per delivery, in nanoseconds";

    public bool IsAvailable(Summary summary) => summary.BenchmarksCases.Any(static c => Subscribers(c) is not null);

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        if (Subscribers(benchmarkCase) is not { } subscribers || summary[benchmarkCase] is not { } report)
        {
            return "-";
        }

        if (_bytes)
        {
            return report.GcStats.GetBytesAllocatedPerOperation(benchmarkCase) is { } bytes
                ? (bytes / (double)subscribers).ToString("0.##", CultureInfo.InvariantCulture)
                : "?";
        }

        return report.ResultStatistics is { } statistics
            ? (statistics.Mean / subscribers).ToString("0.0", CultureInfo.InvariantCulture)
            : "?";
    }

    public override string ToString() => ColumnName;

    private static int? Subscribers(BenchmarkCase benchmarkCase) =>
        benchmarkCase.Parameters.Items.FirstOrDefault(static p => p.Name == ParameterName)?.Value as int?;
}

using System.Text.RegularExpressions;

namespace Relay.Deploy.Tests;

/// <summary>
/// Relay's metric instruments as the code declares them (every <c>meter.CreateX("relay.…")</c> under services/ and
/// shared/), and the series names the OpenTelemetry Prometheus exporter writes for each at <c>/metrics</c>.
/// </summary>
internal static partial class RelayInstruments
{
    /// <summary>One instrument: its name, the CreateX method that made it, its unit (null when none) and its file.</summary>
    public sealed record Instrument(string Name, string Kind, string? Unit, string File)
    {
        /// <summary>Counters (observable or not) are monotonic sums: the exporter adds <c>_total</c>.</summary>
        public bool IsCounter => Kind is "Counter" or "ObservableCounter";

        public bool IsHistogram => Kind == "Histogram";

        /// <summary>The series family as the exporter names it: dots to underscores, the unit's word added, <c>_total</c> for counters.</summary>
        public string Family
        {
            get
            {
                var name = Invalid().Replace(Name, "_");
                var unit = PrometheusUnit(Unit);
                if (unit is not null && !name.EndsWith("_" + unit, StringComparison.Ordinal))
                {
                    name += "_" + unit;
                }

                return IsCounter ? name + "_total" : name;
            }
        }

        /// <summary>The sample names a scrape holds for it: a histogram's three series, or the family itself.</summary>
        public IReadOnlyList<string> SampleNames => IsHistogram ? [Family + "_bucket", Family + "_sum", Family + "_count"] : [Family];

        /// <summary>What tells instruments apart for the exporter's naming: a kind with (or without) a unit.</summary>
        public string Shape => Kind + (Unit is null ? "" : Unit.StartsWith('{') ? " {annotation}" : " " + Unit);
    }

    [GeneratedRegex(@"\.Create(?<kind>Observable(?:Counter|UpDownCounter|Gauge)|Counter|UpDownCounter|Gauge|Histogram)(?:<[^>(]+>)?\(")]
    private static partial Regex CreateCall();

    [GeneratedRegex(@"\G\s*""(?<name>[^""]+)""")]
    private static partial Regex LiteralName();

    [GeneratedRegex(@"\bunit:\s*""(?<unit>[^""]*)""")]
    private static partial Regex UnitArgument();

    [GeneratedRegex("[^a-zA-Z0-9_:]")]
    private static partial Regex Invalid();

    private static readonly Lazy<IReadOnlyList<Instrument>> Scanned = new(Scan);

    /// <summary>Every instrument the code creates.</summary>
    public static IReadOnlyList<Instrument> All => Scanned.Value;

    /// <summary>Every sample name Relay's own instruments can put on a scrape.</summary>
    public static IReadOnlySet<string> SampleNames => All.SelectMany(static i => i.SampleNames).ToHashSet(StringComparer.Ordinal);

    /// <summary>
    /// The exporter's word for a unit (OpenTelemetry's Prometheus compatibility rules): UCUM units it knows become
    /// words, an annotation in braces says nothing and is dropped; null when nothing is added.
    /// </summary>
    public static string? PrometheusUnit(string? unit) => unit switch
    {
        null or "" => null,
        _ when unit.StartsWith('{') && unit.EndsWith('}') => null,
        "s" => "seconds",
        "ms" => "milliseconds",
        "By" => "bytes",
        "1" => "ratio",
        _ => Invalid().Replace(unit, "_"),
    };

    private static List<Instrument> Scan()
    {
        var files = new[] { "services", "shared" }
            .SelectMany(static folder => Directory.EnumerateFiles(Repo.PathOf(folder), "*.cs", SearchOption.AllDirectories))
            .Where(static f => !f.Contains("/bin/", StringComparison.Ordinal) && !f.Contains("/obj/", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal);
        var found = new List<Instrument>();
        foreach (var file in files)
        {
            var text = File.ReadAllText(file);
            foreach (Match call in CreateCall().Matches(text))
            {
                var name = LiteralName().Match(text, call.Index + call.Length);
                if (!name.Success)
                {
                    // A name from a constant or a variable would hide the instrument from this scan: keep them literal.
                    throw new InvalidDataException($"{Repo.Relative(file)}: Create{call.Groups["kind"].Value} at offset {call.Index} is not given its name as a string literal; the deploy tests read instrument names from the source");
                }

                var end = text.IndexOf(';', name.Index);
                var unit = UnitArgument().Match(text[name.Index..end]);
                found.Add(new Instrument(name.Groups["name"].Value, call.Groups["kind"].Value, unit.Success ? unit.Groups["unit"].Value : null, Repo.Relative(file)));
            }
        }

        return found;
    }
}

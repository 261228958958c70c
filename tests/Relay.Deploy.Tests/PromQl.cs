using System.Text.RegularExpressions;

namespace Relay.Deploy.Tests;

/// <summary>
/// The metric names a PromQL expression reads: every bare identifier that is not a function or aggregation (followed
/// by '('), a keyword, or a label (inside {…}, or the list after by/without/on/ignoring/group_left/group_right);
/// strings, ranges ([5m], [$__rate_interval]), numbers, durations and Grafana's $variables are skipped.
/// </summary>
internal static partial class PromQl
{
    private static readonly HashSet<string> Keywords = ["and", "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN", "start", "end"];

    private static readonly HashSet<string> LabelListKeywords = ["by", "without", "on", "ignoring", "group_left", "group_right"];

    /// <summary>Grafana's label_values(query, label) templating function: only its query is PromQL.</summary>
    [GeneratedRegex(@"^\s*label_values\((?<query>.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", RegexOptions.Singleline)]
    private static partial Regex LabelValues();

    /// <summary>The metric names in a Grafana query (PromQL, or label_values(PromQL, label)).</summary>
    public static IReadOnlyList<string> MetricNamesOfGrafanaQuery(string query)
    {
        var match = LabelValues().Match(query);
        return match.Success ? MetricNames(match.Groups["query"].Value) : MetricNames(query);
    }

    public static IReadOnlyList<string> MetricNames(string expr)
    {
        ArgumentNullException.ThrowIfNull(expr);
        var names = new List<string>();
        var i = 0;
        while (i < expr.Length)
        {
            var c = expr[i];
            if (c is '"' or '\'' or '`')
            {
                i = SkipString(expr, i);
            }
            else if (c == '{')
            {
                i = SkipBalanced(expr, i, '{', '}');
            }
            else if (c == '[')
            {
                i = SkipBalanced(expr, i, '[', ']');
            }
            else if (c == '#')
            {
                var end = expr.IndexOf('\n', i);
                i = end < 0 ? expr.Length : end;
            }
            else if (c == '$')
            {
                // $var, ${var} or ${var:format}: Grafana fills them in; never a metric name.
                i++;
                if (i < expr.Length && expr[i] == '{')
                {
                    i = SkipBalanced(expr, i, '{', '}');
                }
                else
                {
                    while (i < expr.Length && IsIdentifierPart(expr[i]))
                    {
                        i++;
                    }
                }
            }
            else if (char.IsAsciiDigit(c) || (c == '.' && i + 1 < expr.Length && char.IsAsciiDigit(expr[i + 1])))
            {
                // Numbers (0.99, 1e3, 0x1f) and durations (5m, 1h30m).
                while (i < expr.Length && (char.IsAsciiLetterOrDigit(expr[i]) || expr[i] == '.'))
                {
                    i++;
                }
            }
            else if (IsIdentifierStart(c))
            {
                var start = i;
                while (i < expr.Length && IsIdentifierPart(expr[i]))
                {
                    i++;
                }

                var word = expr[start..i];
                var next = i;
                while (next < expr.Length && char.IsWhiteSpace(expr[next]))
                {
                    next++;
                }

                if (LabelListKeywords.Contains(word))
                {
                    if (next < expr.Length && expr[next] == '(')
                    {
                        i = SkipBalanced(expr, next, '(', ')');
                    }
                }
                else if ((next < expr.Length && expr[next] == '(') || FollowedByGrouping(expr, next))
                {
                    // A function or an aggregation (sum by (le) (…)): its arguments are read on.
                }
                else if (!Keywords.Contains(word))
                {
                    names.Add(word);
                }
            }
            else
            {
                i++;
            }
        }

        return names;
    }

    private static bool FollowedByGrouping(string expr, int at) =>
        (expr.AsSpan(at).StartsWith("by", StringComparison.Ordinal) && (at + 2 >= expr.Length || !IsIdentifierPart(expr[at + 2]))) ||
        (expr.AsSpan(at).StartsWith("without", StringComparison.Ordinal) && (at + 7 >= expr.Length || !IsIdentifierPart(expr[at + 7])));

    private static bool IsIdentifierStart(char c) => char.IsAsciiLetter(c) || c is '_' or ':';

    private static bool IsIdentifierPart(char c) => char.IsAsciiLetterOrDigit(c) || c is '_' or ':';

    private static int SkipString(string expr, int i)
    {
        var quote = expr[i++];
        while (i < expr.Length && expr[i] != quote)
        {
            i += expr[i] == '\\' && quote != '`' ? 2 : 1;
        }

        return i + 1;
    }

    private static int SkipBalanced(string expr, int i, char open, char close)
    {
        var depth = 0;
        while (i < expr.Length)
        {
            var c = expr[i];
            if (c is '"' or '\'' or '`')
            {
                i = SkipString(expr, i);
                continue;
            }

            if (c == open)
            {
                depth++;
            }
            else if (c == close && --depth == 0)
            {
                return i + 1;
            }

            i++;
        }

        throw new FormatException($"unbalanced '{open}' in: {expr}");
    }
}

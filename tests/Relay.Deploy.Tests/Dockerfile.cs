using System.Text;
using System.Text.Json;

namespace Relay.Deploy.Tests;

/// <summary>One instruction of a Dockerfile: its keyword (upper case) and its arguments, continuation lines joined.</summary>
internal sealed record DockerInstruction(string Keyword, string Arguments, int Line);

/// <summary>A stage: its FROM image, its name (AS ...) and its instructions after FROM.</summary>
internal sealed record DockerStage(string Image, string? Name, IReadOnlyList<DockerInstruction> Instructions)
{
    public IEnumerable<DockerInstruction> All(string keyword) => Instructions.Where(i => i.Keyword == keyword);

    /// <summary>The stage's ENV variables (both the <c>ENV k=v k2=v2</c> and the legacy <c>ENV k v</c> forms); later ones win.</summary>
    public IReadOnlyDictionary<string, string> Environment
    {
        get
        {
            var env = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var instruction in All("ENV"))
            {
                var words = Dockerfile.Words(instruction.Arguments);
                if (words.Count == 2 && !words[0].Contains('=', StringComparison.Ordinal))
                {
                    env[words[0]] = words[1];
                    continue;
                }

                foreach (var word in words)
                {
                    var eq = word.IndexOf('=', StringComparison.Ordinal);
                    if (eq <= 0)
                    {
                        throw new FormatException($"line {instruction.Line}: ENV word '{word}' is not key=value");
                    }

                    env[word[..eq]] = word[(eq + 1)..];
                }
            }

            return env;
        }
    }
}

/// <summary>
/// A small Dockerfile reader: enough of the syntax (comments, parser directives, backslash continuations, exec-form
/// JSON, shell words with quotes) to check what the images build, expose and probe, not a full BuildKit frontend.
/// </summary>
internal sealed class Dockerfile
{
    private static readonly HashSet<string> Keywords =
    [
        "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR",
        "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER",
    ];

    private Dockerfile(string path, IReadOnlyList<DockerStage> stages)
    {
        Path = path;
        Stages = stages;
    }

    public string Path { get; }

    public IReadOnlyList<DockerStage> Stages { get; }

    public DockerStage Final => Stages[^1];

    public static Dockerfile Load(string path) => Parse(path, File.ReadAllText(path));

    public static Dockerfile Parse(string path, string text)
    {
        var instructions = new List<DockerInstruction>();
        var lines = text.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        var current = new StringBuilder();
        var startLine = 0;
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i];
            var trimmed = line.TrimStart();
            if (trimmed.StartsWith('#'))
            {
                continue; // comments and parser directives (also between continuation lines, as BuildKit allows)
            }

            if (current.Length == 0)
            {
                if (trimmed.Length == 0)
                {
                    continue;
                }

                startLine = i + 1;
            }

            var continued = line.TrimEnd().EndsWith('\\');
            current.Append(continued ? line.TrimEnd()[..^1] : line).Append(' ');
            if (!continued)
            {
                instructions.Add(Instruction(current.ToString().Trim(), startLine, path));
                current.Clear();
            }
        }

        if (current.Length > 0)
        {
            throw new FormatException($"{path}: the last instruction (line {startLine}) ends in a continuation");
        }

        var stages = new List<DockerStage>();
        string? image = null;
        string? name = null;
        var body = new List<DockerInstruction>();
        foreach (var instruction in instructions)
        {
            if (instruction.Keyword == "FROM")
            {
                if (image is not null)
                {
                    stages.Add(new DockerStage(image, name, body));
                }

                var words = Words(instruction.Arguments).Where(static w => !w.StartsWith("--", StringComparison.Ordinal)).ToList();
                image = words[0];
                name = words.Count == 3 && words[1].Equals("AS", StringComparison.OrdinalIgnoreCase) ? words[2] : null;
                body = [];
            }
            else if (image is null && instruction.Keyword != "ARG")
            {
                throw new FormatException($"{path}: line {instruction.Line}: {instruction.Keyword} before the first FROM");
            }
            else
            {
                body.Add(instruction);
            }
        }

        if (image is null)
        {
            throw new FormatException($"{path}: no FROM");
        }

        stages.Add(new DockerStage(image, name, body));
        return new Dockerfile(path, stages);
    }

    private static DockerInstruction Instruction(string text, int line, string path)
    {
        var space = text.IndexOfAny([' ', '\t']);
        var keyword = (space < 0 ? text : text[..space]).ToUpperInvariant();
        if (!Keywords.Contains(keyword))
        {
            throw new FormatException($"{path}: line {line}: unknown instruction '{keyword}'");
        }

        return new DockerInstruction(keyword, space < 0 ? "" : text[(space + 1)..].Trim(), line);
    }

    /// <summary>The command of a RUN/CMD/ENTRYPOINT/HEALTHCHECK CMD: the JSON array's items, or the shell form as one string.</summary>
    public static IReadOnlyList<string> Command(string arguments)
    {
        var trimmed = arguments.Trim();
        if (trimmed.StartsWith('['))
        {
            return JsonSerializer.Deserialize<string[]>(trimmed) ?? throw new FormatException("exec form is null");
        }

        return [trimmed];
    }

    /// <summary>Shell-like words: whitespace separated, with single and double quotes (and backslash in double quotes).</summary>
    public static List<string> Words(string text)
    {
        var words = new List<string>();
        var word = new StringBuilder();
        var inWord = false;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (char.IsWhiteSpace(c))
            {
                if (inWord)
                {
                    words.Add(word.ToString());
                    word.Clear();
                    inWord = false;
                }

                continue;
            }

            inWord = true;
            if (c is '"' or '\'')
            {
                var end = i + 1;
                while (end < text.Length && text[end] != c)
                {
                    if (c == '"' && text[end] == '\\' && end + 1 < text.Length)
                    {
                        end++;
                    }

                    word.Append(text[end]);
                    end++;
                }

                if (end >= text.Length)
                {
                    throw new FormatException($"unclosed quote in: {text}");
                }

                i = end;
            }
            else
            {
                word.Append(c);
            }
        }

        if (inWord)
        {
            words.Add(word.ToString());
        }

        return words;
    }
}

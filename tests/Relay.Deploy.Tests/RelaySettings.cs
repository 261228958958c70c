using System.Globalization;
using System.Reflection;

namespace Relay.Deploy.Tests;

/// <summary>
/// The settings Relay reads, found in its assemblies: every options class with a <c>SectionName</c> constant
/// (<c>Relay:Ingress</c>, <c>Relay:Redis</c>, …) and the scalar keys declared as <c>…Key</c> constants beside them
/// (<c>Relay:Bus</c>). An environment variable <c>Relay__Section__Property</c> (with <c>__N__</c> for list items and
/// <c>__key__</c> for dictionary entries) is real when the configuration binder would put it on a property.
/// </summary>
internal static class RelaySettings
{
    private static readonly Lazy<(ILookup<string, Type> Sections, IReadOnlySet<string> Keys)> Known = new(Discover);

    /// <summary>Section (e.g. <c>Relay:Ingress</c>) to the options classes bound from it.</summary>
    public static ILookup<string, Type> Sections => Known.Value.Sections;

    /// <summary>Scalar keys such as <c>Relay:Bus</c>.</summary>
    public static IReadOnlySet<string> Keys => Known.Value.Keys;

    private static (ILookup<string, Type>, IReadOnlySet<string>) Discover()
    {
        var assemblies = Directory.EnumerateFiles(AppContext.BaseDirectory, "Relay.*.dll")
            .Where(static f => !Path.GetFileName(f).StartsWith("Relay.Deploy.Tests", StringComparison.Ordinal))
            .Select(static f => Assembly.Load(AssemblyName.GetAssemblyName(f)));
        var sections = new List<(string Section, Type Type)>();
        var keys = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var type in assemblies.SelectMany(static a => a.GetTypes()))
        {
            foreach (var field in type.GetFields(BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly).Where(static f => f.IsLiteral && f.FieldType == typeof(string)))
            {
                var value = (string)field.GetRawConstantValue()!;
                if (!value.StartsWith("Relay:", StringComparison.Ordinal))
                {
                    continue;
                }

                if (field.Name == "SectionName")
                {
                    sections.Add((value, type));
                }
                else if (field.Name.EndsWith("Key", StringComparison.Ordinal))
                {
                    keys.Add(value);
                }
            }
        }

        return (sections.ToLookup(static s => s.Section, static s => s.Type, StringComparer.OrdinalIgnoreCase), keys);
    }

    /// <summary>Null when <paramref name="variable"/> (<c>Relay__…</c>) names a real setting; else why not.</summary>
    public static string? Problem(string variable)
    {
        var key = variable.Replace("__", ":", StringComparison.Ordinal);
        if (Keys.Contains(key))
        {
            return null;
        }

        var parts = key.Split(':');
        if (parts.Length < 3)
        {
            return $"{variable}: no setting {key}";
        }

        var section = parts[0] + ":" + parts[1];
        var types = Sections[section].ToList();
        if (types.Count == 0)
        {
            return $"{variable}: no options class is bound from {section} (known: {string.Join(", ", Sections.Select(static s => s.Key).Order(StringComparer.Ordinal))})";
        }

        var reasons = types.Select(t => Walk(t, parts.AsSpan(2))).ToList();
        return reasons.Any(static r => r is null) ? null : $"{variable}: {string.Join("; ", reasons.Distinct())}";
    }

    private static string? Walk(Type type, ReadOnlySpan<string> path)
    {
        while (true)
        {
            if (path.IsEmpty)
            {
                return IsScalar(type) ? null : $"{type.Name} is not a single value";
            }

            if (IsScalar(type))
            {
                return $"{type.Name} has no member '{path[0]}'";
            }

            if (ElementOf(type, out var element, out var keyed))
            {
                if (!keyed && !int.TryParse(path[0], NumberStyles.None, CultureInfo.InvariantCulture, out _))
                {
                    return $"'{path[0]}' is not a list index";
                }

                type = element;
                path = path[1..];
                continue;
            }

            var name = path[0];
            var property = type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
                .FirstOrDefault(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase) && p.GetIndexParameters().Length == 0);
            if (property is null)
            {
                return $"{type.Name} has no property '{name}'";
            }

            type = property.PropertyType;
            path = path[1..];
        }
    }

    private static bool IsScalar(Type type)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        return type.IsPrimitive || type.IsEnum || type == typeof(string) || type == typeof(decimal) || type == typeof(TimeSpan)
            || type == typeof(DateTimeOffset) || type == typeof(DateTime) || type == typeof(Uri) || type == typeof(Guid);
    }

    private static bool ElementOf(Type type, out Type element, out bool keyed)
    {
        if (type.IsArray)
        {
            (element, keyed) = (type.GetElementType()!, false);
            return true;
        }

        var interfaces = type.IsInterface ? type.GetInterfaces().Append(type) : type.GetInterfaces();
        var dictionary = interfaces.FirstOrDefault(static i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IDictionary<,>));
        if (dictionary is not null)
        {
            (element, keyed) = (dictionary.GetGenericArguments()[1], true);
            return true;
        }

        var list = interfaces.FirstOrDefault(static i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IEnumerable<>));
        if (list is not null && type != typeof(string))
        {
            (element, keyed) = (list.GetGenericArguments()[0], false);
            return true;
        }

        (element, keyed) = (typeof(object), false);
        return false;
    }
}

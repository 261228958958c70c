using System.Reflection;
using System.Reflection.Emit;
using Relay.Ingress;

namespace Relay.Services.Tests;

/// <summary>
/// The ingress connection layers point one way (docs/architecture.md, "WebSockets at the connection"): <c>WebSockets/</c>
/// (RFC 6455 on a bare socket) uses nothing of <c>Sending/</c> or <c>Realtime/</c>, and <c>Sending/</c> nothing of
/// <c>Realtime/</c>. Read from the compiled assembly: every type a layer's code names, in signatures, fields, locals and
/// method bodies (async state machines and lambdas included, as nested types).
/// </summary>
public sealed class IngressLayersTests
{
    private const string WebSockets = "Relay.Ingress.WebSockets";
    private const string Sending = "Relay.Ingress.Sending";
    private const string Realtime = "Relay.Ingress.Realtime";

    private static readonly Assembly Ingress = typeof(IngressNode).Assembly;

    [Theory]
    [InlineData(WebSockets, Sending)]
    [InlineData(WebSockets, Realtime)]
    [InlineData(Sending, Realtime)]
    public void Layer_UsesNothingOfTheLayersAboveIt(string layer, string above)
    {
        var uses = new SortedSet<string>(StringComparer.Ordinal);
        var types = Ingress.GetTypes().Where(type => type.Namespace == layer).ToList();
        Assert.NotEmpty(types);
        foreach (var type in types)
        {
            foreach (var used in TypesUsedBy(type))
            {
                if (used.Namespace == above)
                {
                    uses.Add($"{type.FullName} uses {used.FullName}");
                }
            }
        }

        Assert.True(uses.Count == 0, $"{layer} must not use {above}:\n" + string.Join("\n", uses));
    }

    private static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(static field => (OpCode)field.GetValue(null)!)
        .ToDictionary(static op => op.Value);

    private static HashSet<Type> TypesUsedBy(Type type)
    {
        var used = new HashSet<Type>();
        const BindingFlags Everything = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        Add(used, type.BaseType);
        foreach (var contract in type.GetInterfaces())
        {
            Add(used, contract);
        }

        foreach (var field in type.GetFields(Everything))
        {
            Add(used, field.FieldType);
        }

        foreach (var method in type.GetMethods(Everything).Cast<MethodBase>().Concat(type.GetConstructors(Everything)))
        {
            if (method is MethodInfo info)
            {
                Add(used, info.ReturnType);
            }

            foreach (var parameter in method.GetParameters())
            {
                Add(used, parameter.ParameterType);
            }

            var body = method.GetMethodBody();
            if (body is null)
            {
                continue;
            }

            foreach (var local in body.LocalVariables)
            {
                Add(used, local.LocalType);
            }

            AddFromIl(used, method, body.GetILAsByteArray() ?? []);
        }

        return used;
    }

    // Every field, method and type token in a method body, resolved to the types it names.
    private static void AddFromIl(HashSet<Type> used, MethodBase method, byte[] il)
    {
        var typeArguments = method.DeclaringType is { IsGenericType: true } declaring ? declaring.GetGenericArguments() : null;
        var methodArguments = method.IsGenericMethod ? method.GetGenericArguments() : null;
        for (var at = 0; at < il.Length;)
        {
            short value = il[at++];
            if (value == 0xFE)
            {
                value = (short)(0xFE00 | il[at++]);
            }

            var op = OpCodesByValue[value];
            switch (op.OperandType)
            {
                case OperandType.InlineField or OperandType.InlineMethod or OperandType.InlineTok or OperandType.InlineType:
                    var member = method.Module.ResolveMember(BitConverter.ToInt32(il, at), typeArguments, methodArguments);
                    switch (member)
                    {
                        case Type named:
                            Add(used, named);
                            break;
                        case FieldInfo field:
                            Add(used, field.DeclaringType);
                            Add(used, field.FieldType);
                            break;
                        case MethodBase called:
                            Add(used, called.DeclaringType);
                            if (called is MethodInfo calledInfo)
                            {
                                Add(used, calledInfo.ReturnType);
                                foreach (var argument in calledInfo.IsGenericMethod ? calledInfo.GetGenericArguments() : [])
                                {
                                    Add(used, argument);
                                }
                            }

                            foreach (var parameter in called.GetParameters())
                            {
                                Add(used, parameter.ParameterType);
                            }

                            break;
                    }

                    at += 4;
                    break;
                case OperandType.InlineSwitch:
                    at += 4 + (4 * BitConverter.ToInt32(il, at));
                    break;
                case OperandType.InlineI8 or OperandType.InlineR:
                    at += 8;
                    break;
                case OperandType.InlineBrTarget or OperandType.InlineI or OperandType.InlineSig or OperandType.InlineString or OperandType.ShortInlineR:
                    at += 4;
                    break;
                case OperandType.InlineVar:
                    at += 2;
                    break;
                case OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar:
                    at += 1;
                    break;
            }
        }
    }

    // A type and what it is made of: element types, generic arguments, and the types it is nested in.
    private static void Add(HashSet<Type> used, Type? type)
    {
        if (type is null || type.IsGenericParameter || !used.Add(type))
        {
            return;
        }

        if (type.HasElementType)
        {
            Add(used, type.GetElementType());
        }

        if (type.IsGenericType)
        {
            foreach (var argument in type.GetGenericArguments())
            {
                Add(used, argument);
            }
        }

        Add(used, type.DeclaringType);
    }
}

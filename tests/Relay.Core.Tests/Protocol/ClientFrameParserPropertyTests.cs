using System.Text;
using FsCheck;
using FsCheck.Fluent;
using Relay.Core.Protocol;

namespace Relay.Core.Tests.Protocol;

/// <summary>
/// Random JSON shapes in every field of a request (objects, arrays, scalars; batches mixing objects and other values):
/// the parser gives exactly one request per element, each with its <c>ref</c> when the ref was a number or a string.
/// </summary>
public sealed class ClientFrameParserPropertyTests
{
    private static readonly string[] Keys = ["type", "ref", "channel", "data", "name", "id", "action", "token", "rewind", "limit", "before", "since", "epoch", "seq", "x"];

    private static readonly string[] Scalars =
    [
        "null", "true", "false", "0", "-1", "1.5", "1e3", "12345678901234567890", "\"\"", "\"ping\"", "\"publish\"",
        "\"subscribe\"", "\"history\"", "\"fz:a\"", "\"a//b\"", "\"x\\n\\\"y\"", "\"\\u0074ype\"",
    ];

    /// <summary>One element of a frame: its JSON text and the ref the reply must carry (null: none readable).</summary>
    private sealed record Element(string Json, string? Ref)
    {
        public override string ToString() => Json;
    }

    private static Gen<string> Value(int depth) => depth == 0
        ? Gen.Elements(Scalars)
        : Gen.Frequency(
            (3, Gen.Elements(Scalars)),
            (1, Gen.Choose(0, 3).SelectMany(n => Gen.ArrayOf(Value(depth - 1), n)).Select(static items => "[" + string.Join(",", items) + "]")),
            (1, Gen.Choose(0, 3).SelectMany(n => Gen.ArrayOf(Gen.Elements(Keys).SelectMany(_ => Value(depth - 1), static (k, v) => $"\"{k}\":{v}"), n))
                .Select(static fields => "{" + string.Join(",", fields) + "}")));

    /// <summary>A request object with distinct top-level keys, any of them holding any shape.</summary>
    private static Gen<Element> Request() =>
        from keys in Gen.SubListOf(Keys)
        from values in Gen.ArrayOf(Value(2), keys.Count)
        from typeText in Gen.Frequency((2, Gen.Elements("\"ping\"", "\"publish\"", "\"history\"", "\"nope\"")), (3, Value(2)))
        from refText in Gen.Frequency((2, Gen.Elements("7", "\"r-1\"", "-0.5e2")), (1, Value(2)))
        from order in Gen.Shuffle(Enumerable.Range(0, keys.Count).ToArray())
        select Render(keys, values, typeText, refText, order);

    private static Element Render(IList<string> keys, string[] values, string typeText, string refText, int[] order)
    {
        var fields = new List<string>();
        string? reference = null;
        foreach (var i in order)
        {
            var value = keys[i] switch { "type" => typeText, "ref" => refText, _ => values[i] };
            if (keys[i] == "ref" && (value.StartsWith('"') || char.IsAsciiDigit(value[0]) || value[0] == '-'))
            {
                reference = value;
            }

            fields.Add($"\"{keys[i]}\":{value}");
        }

        return new Element("{" + string.Join(",", fields) + "}", reference);
    }

    /// <summary>A frame: one request object, or a batch of requests and other values (each answered on its own).</summary>
    private sealed record Frame(string Text, Element[] Elements)
    {
        public override string ToString() => Text;
    }

    private static Gen<Frame> Frames() => Gen.Frequency(
        (1, Request().Select(static request => new Frame(request.Json, [request]))),
        (2, Gen.Choose(0, 5)
            .SelectMany(n => Gen.ArrayOf(Gen.Frequency((4, Request()), (1, Value(2).Where(static v => !v.StartsWith('{')).Select(static v => new Element(v, null)))), n))
            .Select(static elements => new Frame("[" + string.Join(",", elements.Select(static e => e.Json)) + "]", elements))));

    [Fact]
    public void Parse_RandomShapes_GivesOneRequestPerElementWithItsReadableRef()
    {
        var property = Prop.ForAll(Frames().ToArbitrary(), frame =>
        {
            var (text, elements) = frame;
            var requests = new List<ClientRequest>();
            var error = ClientFrameParser.Parse(Encoding.UTF8.GetBytes(text), requests);
            Assert.True(error is null, $"frame error {error?.Message} for {text}");
            Assert.True(requests.Count == elements.Length, $"{requests.Count} requests for {elements.Length} elements: {text}");
            for (var i = 0; i < elements.Length; i++)
            {
                var got = requests[i].Ref is { } r ? Encoding.UTF8.GetString(r) : null;
                Assert.True(got == elements[i].Ref, $"element {i} ref {got ?? "none"}, expected {elements[i].Ref ?? "none"}: {text}");
            }
        });
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(2000), property);
    }

    [Theory]
    [InlineData("""{"type":{"a":1},"ref":9}""")]
    [InlineData("""{"type":[1,{"ref":2}],"ref":9}""")]
    [InlineData("""{"ref":9,"type":{"type":"ping","ref":3}}""")]
    public void Parse_TypeThatIsAnObjectOrArray_IsOneErrorWithItsRef(string frame)
    {
        var requests = new List<ClientRequest>();
        Assert.Null(ClientFrameParser.Parse(Encoding.UTF8.GetBytes(frame), requests));
        var request = Assert.Single(requests);
        Assert.Contains("'type' must be a string", request.Error!.Message, StringComparison.Ordinal);
        Assert.Equal("9", Encoding.UTF8.GetString(request.Ref!));
    }

    [Fact]
    public void Parse_BatchElementWithAnObjectType_IsOneRequest()
    {
        var requests = new List<ClientRequest>();
        Assert.Null(ClientFrameParser.Parse("""[{"type":{"a":1,"b":[2,3]},"ref":1},{"type":"ping","ref":2}]"""u8, requests));
        Assert.Equal(2, requests.Count);
        Assert.Equal(["1", "2"], requests.Select(static r => Encoding.UTF8.GetString(r.Ref!)));
        Assert.NotNull(requests[0].Error);
        Assert.Null(requests[1].Error);
    }
}

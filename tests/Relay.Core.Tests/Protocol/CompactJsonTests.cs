using System.Text;
using System.Text.Json;
using FsCheck;
using FsCheck.Fluent;
using Relay.Core.Protocol;

namespace Relay.Core.Tests.Protocol;

public sealed class CompactJsonTests
{
    [Theory]
    [InlineData("{\"a\":\n\n1}", "{\"a\":1}")]
    [InlineData("{\"a\":\r\n\r\n2}", "{\"a\":2}")]
    [InlineData("[ 1 ,\r\t2 ]", "[1,2]")]
    [InlineData("{\"s\":\"two  spaces \\\" quote  \\\\\" , \"t\" : \"\\n\"}", "{\"s\":\"two  spaces \\\" quote  \\\\\",\"t\":\"\\n\"}")]
    [InlineData("\"a b\"", "\"a b\"")]
    [InlineData("12", "12")]
    public void Copy_RemovesWhitespaceBetweenTokens_AndKeepsStringsAsSent(string json, string expected) =>
        Assert.Equal(expected, Encoding.UTF8.GetString(CompactJson.Copy(Encoding.UTF8.GetBytes(json))));

    [Fact]
    public void Copy_OfRandomlySpacedJson_IsTheSameValueWithNoWhitespaceOutsideStrings()
    {
        var spaces = Gen.Elements(string.Empty, string.Empty, " ", "\n", "\r\n", "\r", "\t", " \n\n ");
        var strings = Gen.Elements("\"\"", "\"a b\"", "\"q\\\" s\"", "\"\\\\\"", "\"\\n\\r\\t\"", "\"é ✓\"", "\"\\u0041 \"");
        Gen<string> Value(int depth)
        {
            var scalar = Gen.OneOf(strings, Gen.Elements("0", "-1.5e3", "true", "false", "null"));
            if (depth == 0)
            {
                return scalar;
            }

            var spaced = Value(depth - 1).SelectMany(_ => spaces, static (v, s) => s + v).SelectMany(_ => spaces, static (v, s) => v + s);
            var array = Gen.Choose(0, 3).SelectMany(n => Gen.ArrayOf(spaced, n)).Select(static items => "[" + string.Join(",", items) + "]");
            var member = strings.SelectMany(_ => spaces, static (k, s) => k + s + ":").SelectMany(_ => spaced, static (k, v) => k + v);
            var obj = Gen.Choose(0, 3).SelectMany(n => Gen.ArrayOf(member, n)).Select(static members => "{" + string.Join(",", members) + "}");
            return Gen.Frequency((2, scalar), (1, array), (1, obj));
        }

        Check.One(Config.QuickThrowOnFailure.WithMaxTest(2000), Prop.ForAll(Value(3).ToArbitrary(), json =>
        {
            var compact = CompactJson.Copy(Encoding.UTF8.GetBytes(json));
            using var original = JsonDocument.Parse(json);
            using var copy = JsonDocument.Parse(compact);
            Assert.True(JsonElement.DeepEquals(original.RootElement, copy.RootElement), json);

            // Between tokens only separators are left.
            var reader = new Utf8JsonReader(compact);
            var previousEnd = 0L;
            while (reader.Read())
            {
                var gap = compact.AsSpan((int)previousEnd, (int)(reader.TokenStartIndex - previousEnd));
                Assert.True(gap.Trim(",:"u8).IsEmpty, $"{json} -> {Encoding.UTF8.GetString(compact)}");
                previousEnd = reader.BytesConsumed;
            }

            Assert.Equal(compact.Length, previousEnd);
        }));
    }
}

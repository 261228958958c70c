using Relay.Core.Messages;

namespace Relay.Core.Tests.Messages;

/// <summary>
/// <see cref="JsonPayload"/>: whether a payload that came as bytes goes to JSON subscribers as JSON (MQTT, gRPC, AMQP,
/// Kafka, Pusher); payloads that are not JSON are mostly told by their first byte, the rest by the JSON reader.
/// </summary>
public sealed class JsonPayloadTests
{
    // One JSON value, JSON's whitespace around it allowed (MQTT: JSON or base64 to JSON subscribers, docs/mqtt.md).
    [Theory]
    [InlineData("{\"t\":21.5}", true)]
    [InlineData(" [1,2] ", true)]
    [InlineData("\"text\"", true)]
    [InlineData("-3", true)]
    [InlineData("21.5", true)]
    [InlineData("true", true)]
    [InlineData("\tfalse\n", true)]
    [InlineData("null", true)]
    [InlineData("", false)]
    [InlineData("  ", false)]
    [InlineData("21.5C", false)]
    [InlineData("temperature", false)]
    [InlineData("nul", false)]
    [InlineData("truex", false)]
    [InlineData("hello world", false)]
    [InlineData("{\"a\":1} {}", false)]
    [InlineData("{\"a\":", false)]
    [InlineData("// c\n1", false)]
    public void IsOneValue_OneJsonValueOnly(string payload, bool json) =>
        Assert.Equal(json, JsonPayload.IsOneValue(System.Text.Encoding.UTF8.GetBytes(payload)));

    [Fact]
    public void IsOneValue_BinaryPayload_IsNotJson()
    {
        Assert.False(JsonPayload.IsOneValue([0x00, 0xFF, 0x7B]));
        Assert.False(JsonPayload.IsOneValue([0x7B, 0xFF, 0x7D]));
    }

    [Theory]
    [InlineData("\"text\"", false)]
    [InlineData(" \"text\"", false)]
    [InlineData("{\"a\":\"b\"}", true)]
    [InlineData("[\"a\"]", true)]
    [InlineData("42", true)]
    public void StringNotAllowed_AStringIsNotTakenAsJson(string payload, bool json) =>
        Assert.Equal(json, JsonPayload.IsOneValue(System.Text.Encoding.UTF8.GetBytes(payload), stringAllowed: false));
}

using System.Text;
using Relay.Core.Protocol;

namespace Relay.Core.Tests.Protocol;

public sealed class FrameWriterTests
{
    [Fact]
    public void Rent_AfterDispose_ReusesTheWriterWithNothingOfTheLastFrame()
    {
        var first = FrameWriter.Rent();
        first.Writer.WriteStartObject();
        first.Writer.WriteString("type"u8, "ok");
        first.Writer.WriteEndObject();
        Assert.Equal("""{"type":"ok"}""", Encoding.UTF8.GetString(first.ToArray()));
        first.Dispose();

        using var second = FrameWriter.Rent();
        second.Writer.WriteStartObject();
        second.Writer.WriteNumber("seq"u8, 7);
        second.Writer.WriteEndObject();

        Assert.Same(first, second);
        Assert.Equal("""{"seq":7}""", Encoding.UTF8.GetString(second.ToArray()));
    }

    [Fact]
    public void Rent_WhileAFrameIsBeingBuilt_GivesAWriterOfItsOwn()
    {
        using var outer = FrameWriter.Rent();
        outer.Writer.WriteStartObject();
        outer.Writer.WritePropertyName("inner"u8);
        byte[] inner;
        using (var nested = FrameWriter.Rent())
        {
            Assert.NotSame(outer, nested);
            nested.Writer.WriteStartArray();
            nested.Writer.WriteNumberValue(1);
            nested.Writer.WriteEndArray();
            inner = nested.ToArray();
        }

        outer.Writer.WriteRawValue(inner);
        outer.Writer.WriteEndObject();

        Assert.Equal("""{"inner":[1]}""", Encoding.UTF8.GetString(outer.ToArray()));
    }

    [Fact]
    public void Rent_AfterAFrameThatThrewHalfWay_StartsClean()
    {
        var broken = FrameWriter.Rent();
        broken.Writer.WriteStartObject();
        broken.Writer.WriteString("type"u8, "ok");
        Assert.Throws<InvalidOperationException>(() => broken.Writer.WriteEndArray());
        broken.Dispose();

        using var next = FrameWriter.Rent();
        next.Writer.WriteStartObject();
        next.Writer.WriteEndObject();

        Assert.Equal("{}", Encoding.UTF8.GetString(next.ToArray()));
    }

    [Fact]
    public void Dispose_AfterAFrameOver128KiB_DoesNotKeepItsBuffer()
    {
        var large = FrameWriter.Rent();
        large.Writer.WriteStringValue(new string('x', 200 * 1024));
        Assert.Equal((200 * 1024) + 2, large.ToArray().Length);
        large.Dispose();

        using var next = FrameWriter.Rent();
        Assert.NotSame(large, next);
    }
}

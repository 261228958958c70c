namespace Relay.Redis;

/// <summary>The RESP2/RESP3 type of a reply. <see cref="Null"/> is zero so that <c>default(RedisValue)</c> is a null.</summary>
public enum RespType : byte
{
    /// <summary>RESP2 <c>$-1</c> / <c>*-1</c>, RESP3 <c>_</c>.</summary>
    Null = 0,

    /// <summary><c>+</c></summary>
    SimpleString,

    /// <summary><c>-</c> and RESP3 blob error <c>!</c>.</summary>
    Error,

    /// <summary><c>:</c></summary>
    Integer,

    /// <summary><c>$</c></summary>
    BulkString,

    /// <summary><c>*</c></summary>
    Array,

    /// <summary>RESP3 <c>%</c>; items hold keys and values alternately.</summary>
    Map,

    /// <summary>RESP3 <c>~</c></summary>
    Set,

    /// <summary>RESP3 <c>,</c></summary>
    Double,

    /// <summary>RESP3 <c>#</c></summary>
    Boolean,

    /// <summary>RESP3 <c>(</c>; kept as its decimal text.</summary>
    BigNumber,

    /// <summary>RESP3 <c>=</c>; the three-letter format is in <see cref="RedisValue.VerbatimFormat"/>.</summary>
    VerbatimString,

    /// <summary>RESP3 <c>&gt;</c> (out-of-band: pub/sub messages, invalidations).</summary>
    Push,
}

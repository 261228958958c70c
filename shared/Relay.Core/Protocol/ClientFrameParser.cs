using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace Relay.Core.Protocol;

/// <summary>
/// Parses a client frame (one JSON object, or an array of them) into requests. A frame that is not JSON at all
/// gives one error; a bad request inside a valid frame gives a request carrying its <see cref="ClientRequest.Error"/>,
/// so the reply can still carry its <c>ref</c>.
/// </summary>
public static class ClientFrameParser
{
    /// <summary>The longest idempotency key accepted (spec: up to 64 chars).</summary>
    public const int MaxIdLength = 64;

    /// <summary>The most requests one frame may batch; more is refused rather than letting one frame monopolise a connection.</summary>
    public const int MaxBatch = 100;

    private static readonly JsonReaderOptions ReaderOptions = new() { MaxDepth = 64 };

    /// <summary>Parses <paramref name="frame"/> into <paramref name="requests"/>; returns a frame-level error, or null.</summary>
    public static RelayError? Parse(ReadOnlySpan<byte> frame, List<ClientRequest> requests)
    {
        ArgumentNullException.ThrowIfNull(requests);

        // The reader does not check every byte of a string for UTF-8; payloads are forwarded as they are, so check here.
        if (!Utf8.IsValid(frame))
        {
            return RelayError.BadRequest("frame is not valid UTF-8: send UTF-8 JSON");
        }

        try
        {
            var reader = new Utf8JsonReader(frame, ReaderOptions);
            if (!reader.Read())
            {
                return RelayError.BadRequest("empty frame: send a JSON object or an array of objects");
            }

            if (reader.TokenType == JsonTokenType.StartObject)
            {
                requests.Add(ParseObject(ref reader, frame));
            }
            else if (reader.TokenType == JsonTokenType.StartArray)
            {
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                {
                    if (requests.Count == MaxBatch)
                    {
                        requests.Clear();
                        return RelayError.BadRequest($"a frame may batch at most {MaxBatch} requests");
                    }

                    if (reader.TokenType != JsonTokenType.StartObject)
                    {
                        reader.Skip();
                        requests.Add(new ClientRequest { Error = RelayError.BadRequest("each element of a batch must be a JSON object") });
                        continue;
                    }

                    requests.Add(ParseObject(ref reader, frame));
                }
            }
            else
            {
                return RelayError.BadRequest("a frame must be a JSON object or an array of objects");
            }

            if (reader.Read())
            {
                requests.Clear();
                return RelayError.BadRequest("malformed JSON: extra data after the frame's value");
            }

            return null;
        }
        catch (JsonException ex)
        {
            requests.Clear();
            return RelayError.BadRequest("malformed JSON: " + FirstSentence(ex.Message));
        }
    }

    private static ClientRequest ParseObject(ref Utf8JsonReader reader, ReadOnlySpan<byte> frame)
    {
        var request = new ClientRequest();
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            // Escaped property names are legal JSON but rare; only then is the name copied.
            ReadOnlySpan<byte> property = reader.ValueIsEscaped ? Encoding.UTF8.GetBytes(reader.GetString()!) : reader.ValueSpan;
            reader.Read();
            ReadField(ref reader, frame, request, property);
        }

        if (request.Error is null)
        {
            if (request.TypeName is null)
            {
                request.Error = RelayError.BadRequest("missing field 'type'");
            }
            else if (request.Type == RequestType.Unknown)
            {
                request.Error = RelayError.BadRequest($"unknown type '{Truncate(request.TypeName)}'");
            }
        }

        return request;
    }

    private static void ReadField(ref Utf8JsonReader reader, ReadOnlySpan<byte> frame, ClientRequest request, ReadOnlySpan<byte> property)
    {
        if (property.SequenceEqual("type"u8))
        {
            if (reader.TokenType != JsonTokenType.String)
            {
                // Skipped like any other field's value: read as properties, an object here became several requests.
                SkipValue(ref reader);
                Fail(request, "field 'type' must be a string");
                return;
            }

            request.Type = ParseType(ref reader);

            // A known type's name is a literal: only an unknown one is read out of the frame (for its error message).
            request.TypeName = TypeNameOf(request.Type) ?? reader.GetString();
        }
        else if (property.SequenceEqual("ref"u8))
        {
            if (reader.TokenType is JsonTokenType.Number or JsonTokenType.String)
            {
                var start = (int)reader.TokenStartIndex;
                var length = (int)(reader.BytesConsumed - start);
                request.Ref = frame.Slice(start, length).ToArray();
            }
            else
            {
                SkipValue(ref reader);
                Fail(request, "field 'ref' must be a number or a string");
            }
        }
        else if (property.SequenceEqual("data"u8))
        {
            var start = (int)reader.TokenStartIndex;
            SkipValue(ref reader);
            request.Data = CompactJson.Copy(frame[start..(int)reader.BytesConsumed]);
            request.HasData = true;
        }
        else if (property.SequenceEqual("channel"u8))
        {
            request.Channel = ReadName(ref reader, request, "channel");
        }
        else if (property.SequenceEqual("name"u8))
        {
            request.Name = ReadName(ref reader, request, "name");
        }
        else if (property.SequenceEqual("id"u8))
        {
            request.Id = ReadString(ref reader, request, "id");
            if (request.Id is { Length: 0 or > MaxIdLength })
            {
                Fail(request, $"field 'id' must be 1-{MaxIdLength} characters");
            }
        }
        else if (property.SequenceEqual("action"u8))
        {
            request.Action = ReadString(ref reader, request, "action");
        }
        else if (property.SequenceEqual("token"u8))
        {
            request.Token = ReadString(ref reader, request, "token");
        }
        else if (property.SequenceEqual("rewind"u8))
        {
            request.Rewind = (int?)ReadInteger(ref reader, request, "rewind", 1, int.MaxValue);
        }
        else if (property.SequenceEqual("limit"u8))
        {
            request.Limit = (int?)ReadInteger(ref reader, request, "limit", 1, int.MaxValue);
        }
        else if (property.SequenceEqual("before"u8))
        {
            request.Before = ReadInteger(ref reader, request, "before", 1, long.MaxValue);
        }
        else if (property.SequenceEqual("traceparent"u8) && reader.TokenType == JsonTokenType.String)
        {
            request.TraceParent = reader.GetString();
        }
        else if (property.SequenceEqual("since"u8))
        {
            ReadSince(ref reader, request);
        }
        else
        {
            // Unknown fields are ignored so that newer clients keep working against older servers.
            SkipValue(ref reader);
        }
    }

    private static void ReadSince(ref Utf8JsonReader reader, ClientRequest request)
    {
        if (reader.TokenType != JsonTokenType.StartObject)
        {
            SkipValue(ref reader);
            Fail(request, "field 'since' must be an object {\"epoch\":\"…\",\"seq\":N}");
            return;
        }

        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var isEpoch = reader.ValueTextEquals("epoch"u8);
            var isSeq = reader.ValueTextEquals("seq"u8);
            reader.Read();
            if (isEpoch)
            {
                request.SinceEpoch = ReadString(ref reader, request, "since.epoch");
            }
            else if (isSeq)
            {
                request.SinceSeq = ReadInteger(ref reader, request, "since.seq", 0, long.MaxValue);
            }
            else
            {
                SkipValue(ref reader);
            }
        }

        if (request.Error is null && (request.SinceEpoch is null || request.SinceSeq is null))
        {
            Fail(request, "field 'since' needs both 'epoch' and 'seq'");
        }
    }

    // A channel or event name: clients repeat them, so an unescaped one comes from the thread's NameCache.
    private static string? ReadName(ref Utf8JsonReader reader, ClientRequest request, string field) =>
        reader.TokenType == JsonTokenType.String && !reader.ValueIsEscaped ? NameCache.Get(reader.ValueSpan) : ReadString(ref reader, request, field);

    private static string? ReadString(ref Utf8JsonReader reader, ClientRequest request, string field)
    {
        if (reader.TokenType == JsonTokenType.String)
        {
            return reader.GetString();
        }

        SkipValue(ref reader);
        Fail(request, $"field '{field}' must be a string");
        return null;
    }

    private static long? ReadInteger(ref Utf8JsonReader reader, ClientRequest request, string field, long min, long max)
    {
        if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var value) && value >= min && value <= max)
        {
            return value;
        }

        SkipValue(ref reader);
        Fail(request, $"field '{field}' must be an integer from {min}");
        return null;
    }

    private static void SkipValue(ref Utf8JsonReader reader)
    {
        if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray)
        {
            reader.Skip();
        }
    }

    private static void Fail(ClientRequest request, string message) => request.Error ??= RelayError.BadRequest(message);

    private static RequestType ParseType(ref Utf8JsonReader reader) =>
        reader.ValueTextEquals("publish"u8) ? RequestType.Publish
        : reader.ValueTextEquals("subscribe"u8) ? RequestType.Subscribe
        : reader.ValueTextEquals("unsubscribe"u8) ? RequestType.Unsubscribe
        : reader.ValueTextEquals("presence"u8) ? RequestType.Presence
        : reader.ValueTextEquals("history"u8) ? RequestType.History
        : reader.ValueTextEquals("auth"u8) ? RequestType.Auth
        : reader.ValueTextEquals("ping"u8) ? RequestType.Ping
        : RequestType.Unknown;

    private static string? TypeNameOf(RequestType type) => type switch
    {
        RequestType.Publish => "publish",
        RequestType.Subscribe => "subscribe",
        RequestType.Unsubscribe => "unsubscribe",
        RequestType.Presence => "presence",
        RequestType.History => "history",
        RequestType.Auth => "auth",
        RequestType.Ping => "ping",
        _ => null,
    };

    private static string Truncate(string text) => text.Length <= 40 ? text : text[..40] + "…";

    private static string FirstSentence(string message)
    {
        var end = message.IndexOf(". ", StringComparison.Ordinal);
        return end < 0 ? message : message[..(end + 1)];
    }
}

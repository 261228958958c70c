using System.Collections.Concurrent;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Relay.Services.Tests.Pusher;
using Relay.Testing;
using Xunit.Abstractions;

namespace Relay.Services.Tests.Hostile;

/// <summary>
/// The Pusher WebSocket decoder fuzzed over real sockets: valid frames (subscribe to public, cache, private, presence and
/// user channels with good signatures, unsubscribe, ping, pong, client events, sign-in) with one mutation each: JSON
/// structure (a property dropped or renamed, arrays, cut short, trailing bytes, duplicate keys), wrong types, huge and
/// deep values, data as a string or an object, invalid UTF-8 and lone surrogates, channel names with odd characters,
/// signatures mutated, channel_data invalid (signed or not), client events on channels not subscribed, unknown events.
/// Eight connections send them as fast as they are answered; after each case a subscribe to the connection's probe
/// channel marks the end of its answers. Each answer is one the protocol defines: <c>pusher:error</c> (code null, 4009
/// or 4301), <c>pusher:subscription_error</c> (400, 401, 403, 429), a subscription, a pong, a sign-in, or nothing (a
/// pong, an unsubscribe of nothing); the connection stays open; a subscription to a private, presence or user channel
/// only ever follows a frame whose signature (or sign-in) the test itself finds valid; nothing is logged as an error;
/// and a bystander on a presence channel gets every message of a publisher in order all along.
/// </summary>
[Collection(nameof(HostileCollection))]
public sealed class PusherFuzzTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int Connections = 8;
    private const int CasesPerConnection = 150;
    private const string KeyName = "test.root";
    private const string PresenceChannel = "presence-bystander";
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);
    // Pusher's codes for refusals that leave the connection open: 4009 (unauthorized: a sign-in), 4301 (client event rejected).
    private static readonly int?[] s_errorCodes = [null, 4009, 4301];
    private static readonly int[] s_subscriptionStatuses = [400, 401, 403, 429];

    private HostileServer _host = null!;

    public async Task InitializeAsync() => _host = await HostileServer.StartAsync(PusherServerFixture.Settings());

    public async Task DisposeAsync() => await _host.DisposeAsync();

    [Fact(Timeout = 600_000)]
    public async Task MutatedFrames_GetTheProtocolsAnswers_NeverASubscriptionWithoutASignature_AndABystanderIsServed()
    {
        var server = _host.Server;
        await using var member = await PusherSocket.ConnectAsync(server, KeyName, s_timeout);
        var memberData = """{"user_id":"bystander","user_info":{"name":"b"}}""";
        await member.SubscribeAsync(PresenceChannel, PusherSocket.Auth(RelayServer.Key, $"{member.SocketId}:{PresenceChannel}:{memberData}"), memberData);
        await member.ReceiveAsync("pusher_internal:subscription_succeeded", s_timeout);
        await using var bystander = await Bystander.StartAsync(server, PresenceChannel);
        using var stopWatching = new CancellationTokenSource();
        var ticks = new ConcurrentQueue<int>();
        var watching = WatchAsync(member, ticks, stopWatching.Token);

        var outcomes = new ConcurrentDictionary<string, int>(StringComparer.Ordinal);
        var failures = new ConcurrentQueue<string>();
        var random = new Random(20261205);
        var seeds = Enumerable.Range(0, Connections).Select(_ => random.Next()).ToList();
        await Task.WhenAll(seeds.Select((seed, index) => FuzzAsync(index, seed, outcomes, failures)));

        var count = await bystander.FinishAsync();
        for (var wait = 0; wait < 300 && ticks.Count < count; wait++)
        {
            await Task.Delay(100);
        }

        await stopWatching.CancelAsync();
        await watching;

        foreach (var (outcome, n) in outcomes.OrderBy(static o => o.Key, StringComparer.Ordinal))
        {
            output.WriteLine($"{outcome}: {n}");
        }

        output.WriteLine($"{Connections * CasesPerConnection} cases");
        output.WriteLine($"bystander: {count} messages in order; the presence member got {ticks.Count}");
        _host.AssertNoErrorLogged();
        Assert.True(failures.IsEmpty, string.Join("\n", failures.Take(10)));

        // The Pusher member on the presence channel got the publisher's messages too, in order.
        Assert.Equal(Enumerable.Range(1, count), ticks);

        // The fuzz reached each kind of answer, and mutated signatures were refused.
        Assert.True(outcomes.GetValueOrDefault("subscription_error AuthError 401") > 0, "no mutated signature was refused");
        Assert.True(outcomes.GetValueOrDefault("subscribed private") > 0, "no private channel was subscribed");
        Assert.True(outcomes.GetValueOrDefault("subscribed presence") > 0, "no presence channel was subscribed");
        Assert.True(outcomes.GetValueOrDefault("error null") > 0 && outcomes.GetValueOrDefault("error 4301") > 0, "no pusher:error");

        // Still serving: a fresh connection subscribes to a private channel with a good signature.
        await using var after = await PusherSocket.ConnectAsync(server, KeyName, s_timeout);
        await after.SubscribeAsync("private-after", PusherSocket.Auth(RelayServer.Key, $"{after.SocketId}:private-after"));
        await after.ReceiveAsync("pusher_internal:subscription_succeeded", s_timeout);
    }

    // One connection's cases, in order; a connection the server closed is a failure, and is replaced for the next case.
    private async Task FuzzAsync(int index, int seed, ConcurrentDictionary<string, int> outcomes, ConcurrentQueue<string> failures)
    {
        var random = new Random(seed);
        var probe = $"probe-{index}";
        var socket = await OpenAsync(probe);
        string? user = null;
        try
        {
            for (var i = 0; i < CasesPerConnection; i++)
            {
                var fuzzCase = Generate(random, socket.SocketId, index);
                string outcome;
                try
                {
                    (outcome, user) = await RunCaseAsync(socket, probe, fuzzCase, user);
                }
                catch (Exception ex) when (ex is WebSocketException or OperationCanceledException or JsonException or KeyNotFoundException or InvalidOperationException)
                {
                    outcome = $"FAIL {ex.GetType().Name}: {ex.Message}";
                    await socket.DisposeAsync();
                    socket = await OpenAsync(probe);
                    user = null;
                }

                foreach (var answer in outcome.StartsWith("FAIL", StringComparison.Ordinal) ? ["FAIL"] : outcome.Split(", "))
                {
                    outcomes.AddOrUpdate(answer, 1, static (_, n) => n + 1);
                }

                if (outcome.StartsWith("FAIL", StringComparison.Ordinal))
                {
                    failures.Enqueue($"connection {index} case {i} ({fuzzCase.Mutation}, seed {seed}): {outcome}; sent {Shorten(fuzzCase.Frames)}");
                }
            }
        }
        finally
        {
            await socket.DisposeAsync();
        }
    }

    private async Task<PusherSocket> OpenAsync(string probe)
    {
        var socket = await PusherSocket.ConnectAsync(_host.Server, KeyName, s_timeout);
        await socket.SubscribeAsync(probe);
        await socket.ReceiveAsync("pusher_internal:subscription_succeeded", s_timeout);
        return socket;
    }

    // Sends a case, then the probe; reads up to the probe's subscription_succeeded and judges what came before it.
    private static async Task<(string Outcome, string? User)> RunCaseAsync(PusherSocket socket, string probe, FuzzCase fuzzCase, string? user)
    {
        foreach (var (bytes, binary) in fuzzCase.Frames)
        {
            await socket.SendBytesAsync(bytes, binary ? WebSocketMessageType.Binary : WebSocketMessageType.Text).WaitAsync(s_timeout);
        }

        await socket.SubscribeAsync(probe).WaitAsync(s_timeout);
        var answers = new SortedSet<string>(StringComparer.Ordinal);
        while (true)
        {
            var frame = await socket.ReceiveAsync(s_timeout);
            if (frame.ValueKind != JsonValueKind.Object || !frame.TryGetProperty("event", out var e) || e.ValueKind != JsonValueKind.String)
            {
                return ($"FAIL a frame without an event: {frame.GetRawText()}", user);
            }

            var name = e.GetString()!;
            var channel = frame.TryGetProperty("channel", out var c) ? c.GetString() : null;
            var data = frame.TryGetProperty("data", out var d) ? d : default;
            if (name == "pusher_internal:subscription_succeeded" && channel == probe)
            {
                return (answers.Count == 0 ? "no answer" : string.Join(", ", answers), user);
            }

            switch (name)
            {
                case "pusher:error":
                    var code = data.GetProperty("code").ValueKind == JsonValueKind.Null ? (int?)null : data.GetProperty("code").GetInt32();
                    var message = data.GetProperty("message").GetString()!;
                    if (!s_errorCodes.Contains(code) || message.Contains("internal error", StringComparison.Ordinal))
                    {
                        return ($"FAIL pusher:error {code} {message}", user);
                    }

                    answers.Add($"error {(code is null ? "null" : code)}");
                    break;
                case "pusher:subscription_error":
                    var status = data.GetProperty("status").GetInt32();
                    if (!s_subscriptionStatuses.Contains(status) || channel is null)
                    {
                        return ($"FAIL subscription_error {data.GetRawText()}", user);
                    }

                    answers.Add($"subscription_error {data.GetProperty("type").GetString()} {status}");
                    break;
                case "pusher_internal:subscription_succeeded":
                    var kind = KindOf(channel!);
                    if ((kind is "private" or "presence" && !fuzzCase.Frames.Any(f => SignedSubscribe(f.Bytes, socket.SocketId, channel!)))
                        || (kind == "user" && channel != "#server-to-user-" + user))
                    {
                        return ($"FAIL subscribed to {channel} without a valid signature (signed in as {user ?? "nobody"})", user);
                    }

                    answers.Add($"subscribed {kind}");
                    break;
                case "pusher:signin_success":
                    var userData = JsonDocument.Parse(JsonDocument.Parse(data.GetString()!).RootElement.GetProperty("user_data").GetString()!).RootElement;
                    if (!fuzzCase.Frames.Any(f => SignedSignIn(f.Bytes, socket.SocketId)))
                    {
                        return ("FAIL signed in without a valid signature", user);
                    }

                    user = userData.GetProperty("id").ValueKind == JsonValueKind.String ? userData.GetProperty("id").GetString() : userData.GetProperty("id").GetRawText();
                    answers.Add("signin_success");
                    break;
                case "pusher:pong" or "pusher:cache_miss":
                    answers.Add(name[7..]);
                    break;
                default:
                    // A delivery on a channel the connection holds (other connections' client events, the bystander's
                    // messages, members): Pusher sends its data as a string.
                    if (channel is null || (data.ValueKind is not (JsonValueKind.String or JsonValueKind.Undefined)))
                    {
                        return ($"FAIL unexpected frame {Shorten(frame.GetRawText())}", user);
                    }

                    break;
            }
        }
    }

    // Follows the presence member's frames: the publisher's messages in order (members and client events pass by).
    private static async Task WatchAsync(PusherSocket member, ConcurrentQueue<int> ticks, CancellationToken stop)
    {
        try
        {
            while (!stop.IsCancellationRequested)
            {
                var frame = await member.ReceiveAsync(TimeSpan.FromMinutes(10)).WaitAsync(stop);
                var name = frame.GetProperty("event").GetString();
                if (name == "pusher:ping")
                {
                    await member.SendAsync("""{"event":"pusher:pong","data":{}}""");
                }
                else if (name == "message")
                {
                    ticks.Enqueue(int.Parse(frame.GetProperty("data").GetString()!, System.Globalization.CultureInfo.InvariantCulture));
                }
                else
                {
                    Assert.True(name is "pusher_internal:member_added" or "pusher_internal:member_removed" || name!.StartsWith("client-", StringComparison.Ordinal), $"the member got {frame.GetRawText()}");
                    Assert.Equal(JsonValueKind.String, frame.GetProperty("data").ValueKind);
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Done watching.
        }
    }

    private static string KindOf(string channel) =>
        channel.StartsWith("private-encrypted-", StringComparison.Ordinal) ? "encrypted"
        : channel.StartsWith("private-", StringComparison.Ordinal) ? "private"
        : channel.StartsWith("presence-", StringComparison.Ordinal) ? "presence"
        : channel.StartsWith("#server-to-user-", StringComparison.Ordinal) ? "user"
        : "public";

    // The oracle: whether these bytes, read as the protocol says, are a subscribe to `channel` with a signature made
    // with the key's secret over socket_id:channel[:channel_data].
    private static bool SignedSubscribe(byte[] bytes, string socketId, string channel)
    {
        var data = DataOf(bytes, "pusher:subscribe");
        if (data is not { } d || StringOf(d, "channel") != channel)
        {
            return false;
        }

        var text = KindOf(channel) == "presence" ? $"{socketId}:{channel}:{StringOf(d, "channel_data")}" : $"{socketId}:{channel}";
        return (KindOf(channel) != "presence" || StringOf(d, "channel_data") is not null) && SameSignature(StringOf(d, "auth"), text);
    }

    private static bool SignedSignIn(byte[] bytes, string socketId) =>
        DataOf(bytes, "pusher:signin") is { } d && StringOf(d, "user_data") is { } userData && SameSignature(StringOf(d, "auth"), $"{socketId}::user::{userData}");

    private static JsonElement? DataOf(byte[] bytes, string eventName)
    {
        try
        {
            using var document = JsonDocument.Parse(bytes);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("event", out var e) || e.ValueKind != JsonValueKind.String || e.GetString() != eventName || !root.TryGetProperty("data", out var data))
            {
                return null;
            }

            return data.ValueKind == JsonValueKind.String ? JsonDocument.Parse(data.GetString()!).RootElement.Clone() : data.Clone();
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            return null;
        }
    }

    // A string that is not text (invalid UTF-8, a lone surrogate) is no string at all.
    private static string? StringOf(JsonElement data, string name)
    {
        try
        {
            return data.ValueKind == JsonValueKind.Object && data.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    // key:hex where the key is ours and the hex decodes to the HMAC's bytes (either case of hex digits spells them).
    private static bool SameSignature(string? auth, string text)
    {
        var expected = PusherSocket.Auth(RelayServer.Key, text);
        var colon = auth?.LastIndexOf(':') ?? -1;
        if (auth is null || colon <= 0 || auth[..colon] != KeyName || auth.Length - colon - 1 != 64)
        {
            return false;
        }

        try
        {
            return Convert.FromHexString(auth[(colon + 1)..]).AsSpan().SequenceEqual(Convert.FromHexString(expected[(expected.LastIndexOf(':') + 1)..]));
        }
        catch (FormatException)
        {
            return false;
        }
    }

    private sealed record FuzzCase(List<(byte[] Bytes, bool Binary)> Frames, string Mutation);

    // One to three frames: valid ones, one of them mutated.
    private static FuzzCase Generate(Random random, string socketId, int connection)
    {
        var frames = new List<JsonObject>();
        for (var n = random.Next(1, 4); n > 0; n--)
        {
            frames.Add(ValidFrame(random, socketId, connection));
        }

        var at = random.Next(frames.Count);
        var (bytes, mutation) = Mutate(random, frames[at], socketId);
        var sent = frames.Select(static f => Encoding.UTF8.GetBytes(f.ToJsonString())).ToList();
        sent[at] = bytes;
        return new FuzzCase([.. sent.Select(b => (b, !System.Text.Unicode.Utf8.IsValid(b) || random.Next(10) == 0))], mutation);
    }

    private static JsonObject ValidFrame(Random random, string socketId, int connection)
    {
        switch (random.Next(10))
        {
            case 0:
                return Subscribe(random, (random.Next(3) == 0 ? "cache-" : "") + $"fuzz-{random.Next(5)}", null, null);
            case 1 or 2:
                var channel = $"private-fuzz-{random.Next(3)}";
                return Subscribe(random, channel, PusherSocket.Auth(RelayServer.Key, $"{socketId}:{channel}"), null);
            case 3 or 4:
                var presence = random.Next(3) == 0 ? PresenceChannel : $"presence-fuzz-{random.Next(3)}";
                var channelData = $$$"""{"user_id":"u{{{connection}}}-{{{random.Next(3)}}}","user_info":{"n":{{{random.Next(100)}}}}}""";
                return Subscribe(random, presence, PusherSocket.Auth(RelayServer.Key, $"{socketId}:{presence}:{channelData}"), channelData);
            case 5:
                return new JsonObject { ["event"] = "pusher:unsubscribe", ["data"] = new JsonObject { ["channel"] = $"private-fuzz-{random.Next(3)}" } };
            case 6:
                return new JsonObject { ["event"] = random.Next(2) == 0 ? "pusher:ping" : "pusher:pong", ["data"] = new JsonObject() };
            case 7:
                var userData = $$"""{"id":"user-{{connection}}-{{random.Next(3)}}","name":"n"}""";
                return new JsonObject { ["event"] = "pusher:signin", ["data"] = new JsonObject { ["auth"] = PusherSocket.Auth(RelayServer.Key, $"{socketId}::user::{userData}"), ["user_data"] = userData } };
            case 8:
                return Subscribe(random, $"#server-to-user-user-{connection}-{random.Next(3)}", null, null);
            default:
                var on = random.Next(3) switch { 0 => $"presence-fuzz-{random.Next(3)}", 1 => PresenceChannel, _ => $"private-fuzz-{random.Next(3)}" };
                JsonNode eventData = random.Next(2) == 0 ? new JsonObject { ["text"] = "hi", ["n"] = random.Next() } : JsonValue.Create("plain text " + random.Next());
                return new JsonObject { ["event"] = "client-typing", ["channel"] = on, ["data"] = eventData };
        }
    }

    // Pusher-js sends data as an object; some clients send it JSON-encoded as a string: both are valid.
    private static JsonObject Subscribe(Random random, string channel, string? auth, string? channelData)
    {
        var data = new JsonObject { ["channel"] = channel };
        if (auth is not null)
        {
            data["auth"] = auth;
        }

        if (channelData is not null)
        {
            data["channel_data"] = channelData;
        }

        return new JsonObject { ["event"] = "pusher:subscribe", ["data"] = random.Next(4) == 0 ? JsonValue.Create(data.ToJsonString()) : data };
    }

    private static readonly string[] s_oddChannels =
    [
        "", "private-", "presence-", "#server-to-user-", "server-to-user-x", "a+b", "a#b", "a*", "a b", "a\u0001b", "caf\u00e9", "\u4e2d\u6587",
        "a:b", ":", "a:", "private-a:b", "presence-\u0000", "-", "_", "=@,.;", new string('c', 164), new string('c', 165), "private-" + new string('p', 300),
        "private-encrypted-x", "\ud83d\ude00",
    ];

    private static readonly JsonNode?[] s_wrongValues = [null, 42, -1.5e300, true, false, new JsonArray(), new JsonObject(), "", new JsonArray(1, "a", null), new JsonObject { ["a"] = new JsonObject() }];

    private static (byte[] Bytes, string Mutation) Mutate(Random random, JsonObject frame, string socketId)
    {
        var data = frame["data"] as JsonObject;
        var dataText = frame["data"] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;
        switch (random.Next(20))
        {
            case 0:
                return (Bytes(frame), "none");
            case 1:
            {
                var (owner, name) = AnyProperty(random, frame);
                owner.Remove(name);
                return (Bytes(frame), $"'{name}' dropped");
            }

            case 2:
            {
                var (owner, name) = AnyProperty(random, frame);
                var value = owner[name];
                owner.Remove(name);
                var renamed = random.Next(3) switch { 0 => name.ToUpperInvariant(), 1 => name + " ", _ => "x" + name };
                owner[renamed] = value;
                return (Bytes(frame), $"'{name}' renamed '{renamed}'");
            }

            case 3:
            {
                var (owner, name) = AnyProperty(random, frame);
                var wrong = s_wrongValues[random.Next(s_wrongValues.Length)]?.DeepClone();
                owner[name] = wrong;
                return (Bytes(frame), $"'{name}' set to {wrong?.ToJsonString() ?? "null"}");
            }

            case 4:
            {
                var (owner, name) = AnyProperty(random, frame);
                var size = random.Next(4) switch { 0 => random.Next(200, 2_000), 1 => random.Next(9_000, 11_000), 2 => random.Next(20_000, 30_000), _ => random.Next(100_000, 300_000) };
                owner[name] = new string(random.Next(2) == 0 ? 'x' : '\u00e9', size);
                return (Bytes(frame), $"'{name}' of {size} characters");
            }

            case 5:
            {
                var depth = random.Next(4) switch { 0 => 63, 1 => 65, 2 => 1_000, _ => 20_000 };
                var deep = new string('[', depth) + new string(']', depth);
                var where = random.Next(3);
                if (where == 0 || (data is null && dataText is null))
                {
                    return (Splice(frame, "data", deep), $"data nested {depth} deep");
                }

                if (where == 1 && data is not null)
                {
                    data["channel_data"] = "{\"user_id\":\"d\",\"user_info\":" + deep + "}";
                    return (Bytes(frame), $"channel_data nested {depth} deep");
                }

                frame["data"] = deep;
                return (Bytes(frame), $"data a string nested {depth} deep");
            }

            case 6:
                if (data is not null)
                {
                    frame["data"] = random.Next(3) == 0 ? JsonValue.Create(JsonValue.Create(data.ToJsonString())!.ToJsonString()) : JsonValue.Create(data.ToJsonString());
                    return (Bytes(frame), "data as a (maybe doubly) encoded string");
                }

                if (dataText is not null)
                {
                    try
                    {
                        frame["data"] = JsonNode.Parse(dataText);
                        return (Bytes(frame), "data as an object");
                    }
                    catch (JsonException)
                    {
                    }
                }

                frame["data"] = JsonValue.Create("{\"channel\":");
                return (Bytes(frame), "data a string that is not JSON");
            case 7:
            {
                byte[][] invalid = [[0xC3, 0x28], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xFF], [0xE2, 0x82], [0xC0, 0xAF], [0x80]];
                var bad = invalid[random.Next(invalid.Length)];
                var (owner, name) = AnyProperty(random, frame);
                owner[name] = "\u0001MARK\u0001";
                var text = Bytes(frame);
                var mark = Encoding.UTF8.GetBytes(JsonValue.Create("\u0001MARK\u0001")!.ToJsonString()[1..^1]);
                return (Replace(text, mark, [(byte)'a', .. bad, (byte)'b']), $"invalid UTF-8 {Convert.ToHexString(bad)} in '{name}'");
            }

            case 8:
            {
                var (owner, name) = AnyProperty(random, frame);
                owner[name] = "\u0001MARK\u0001";
                var escape = random.Next(3) switch { 0 => "\\ud800", 1 => "\\udfff\\ud800", _ => "x\\u0000\\ud83d" };
                var mark = Encoding.UTF8.GetBytes(JsonValue.Create("\u0001MARK\u0001")!.ToJsonString()[1..^1]);
                return (Replace(Bytes(frame), mark, Encoding.UTF8.GetBytes(escape)), $"'{escape}' in '{name}'");
            }

            case 9:
            {
                var channel = s_oddChannels[random.Next(s_oddChannels.Length)];
                var target = data ?? frame;
                if (frame["event"]?.GetValue<string>() == "pusher:subscribe" && data is not null)
                {
                    // Signed for the odd name: the name itself is what is refused (or served).
                    data["channel"] = channel;
                    var channelData = data["channel_data"]?.GetValue<string>();
                    data["auth"] = PusherSocket.Auth(RelayServer.Key, channelData is null ? $"{socketId}:{channel}" : $"{socketId}:{channel}:{channelData}");
                }
                else
                {
                    target["channel"] = channel;
                }

                return (Bytes(frame), $"channel '{channel}'");
            }

            case 10 or 11:
            {
                if (data?["auth"]?.GetValue<string>() is not { } auth)
                {
                    goto case 9;
                }

                var colon = auth.LastIndexOf(':');
                var hex = auth[(colon + 1)..];
                var i = random.Next(hex.Length);
                var channel = data["channel"]?.GetValue<string>() ?? "";
                var (mutated, what) = random.Next(11) switch
                {
                    0 => (auth[..(colon + 1)] + hex[..i] + (hex[i] == '0' ? '1' : '0') + hex[(i + 1)..], $"hex digit {i} changed"),
                    1 => (auth[..^1], "last digit dropped"),
                    2 => (auth + "0", "a digit added"),
                    3 => (auth.ToUpperInvariant(), "upper case"),
                    4 => ("test.sub" + auth[colon..], "another key's name"),
                    5 => (hex, "no key name"),
                    6 => ("", "empty"),
                    7 => (PusherSocket.Auth(RelayServer.OtherAppKey, $"{socketId}:{channel}").Replace("other.root", KeyName, StringComparison.Ordinal), "signed with another app's secret"),
                    8 => (PusherSocket.Auth(RelayServer.Key, $"1.2:{channel}"), "signed for another socket"),
                    9 => (PusherSocket.Auth(RelayServer.Key, $"{socketId}:{channel}x"), "signed for another channel"),
                    _ => (auth + ":" + hex, "key:hex:hex"),
                };
                data["auth"] = mutated;
                if (random.Next(3) == 0 && data["channel_data"] is not null)
                {
                    data["channel_data"] = """{"user_id":"intruder"}""";
                    what += ", channel_data swapped unsigned";
                }

                return (Bytes(frame), $"auth {what}");
            }

            case 12:
            {
                string[] bad =
                [
                    "not json", "[]", "{}", "null", "{\"user_id\":null}", "{\"user_id\":{}}", "{\"user_id\":true}", "{\"user_id\":\"\"}",
                    "{\"user_id\":\"" + new string('u', 200) + "\"}", "{\"user_id\":\"a\\u0001b\"}", "{\"user_id\":1e400}", "{\"user_id\":12}",
                    "{\"user_id\":\"big\",\"user_info\":\"" + new string('i', 5_000) + "\"}", "{\"user_id\":\"x\",\"user_info\":", "{\"user_id\":\"a\",\"user_id\":\"b\"}",
                ];
                var channelData = bad[random.Next(bad.Length)];
                var channel = $"presence-fuzz-{random.Next(3)}";
                var signed = random.Next(4) != 0;
                frame = new JsonObject
                {
                    ["event"] = "pusher:subscribe",
                    ["data"] = new JsonObject
                    {
                        ["channel"] = channel,
                        ["auth"] = PusherSocket.Auth(RelayServer.Key, signed ? $"{socketId}:{channel}:{channelData}" : socketId + ":" + channel + ":{}"),
                        ["channel_data"] = channelData,
                    },
                };
                return (Bytes(frame), $"channel_data {Shorten(channelData)} {(signed ? "signed" : "unsigned")}");
            }

            case 13:
            {
                var (name, channel, what) = random.Next(6) switch
                {
                    0 => ("client-x", $"private-never-{random.Next(3)}", "a private channel not subscribed"),
                    1 => ("client-x", "fuzz-0", "a public channel"),
                    2 => ("client-" + new string('e', 250), "private-fuzz-0", "a 257-character name"),
                    3 => ("client-", "private-fuzz-1", "the bare prefix"),
                    4 => ("client-x", "private-encrypted-x", "an encrypted channel"),
                    _ => ("client-x", null, "no channel"),
                };
                frame = new JsonObject { ["event"] = name, ["data"] = new JsonObject { ["n"] = 1 } };
                if (channel is not null)
                {
                    frame["channel"] = channel;
                }

                return (Bytes(frame), $"client event on {what}");
            }

            case 14:
            {
                string[] names = ["pusher:foo", "pusher_internal:subscription_succeeded", "pusher_internal:member_added", "pusher:error", "", "PUSHER:PING", "client", "pusher:connection_established", "\u4e2d", "pusher:signin_success", "pusher:cache_miss"];
                frame["event"] = names[random.Next(names.Length)];
                return (Bytes(frame), $"event '{frame["event"]}'");
            }

            case 15:
            {
                var text = frame.ToJsonString();
                var (changed, what) = random.Next(7) switch
                {
                    0 => ("[" + text + "]", "in an array"),
                    1 => (text[..random.Next(1, text.Length)], "cut short"),
                    2 => (text + "}}", "trailing bytes"),
                    3 => ("{\"event\":\"pusher:ping\"," + text[1..], "a duplicate 'event'"),
                    4 => ("/* c */" + text, "a comment"),
                    5 => (" \t\r\n" + text + " \n", "whitespace around"),
                    _ => (text.Replace("\"", "'", StringComparison.Ordinal), "single quotes"),
                };
                return (Encoding.UTF8.GetBytes(changed), $"structure: {what}");
            }

            case 16:
            {
                var bytes = Bytes(frame);
                for (var n = random.Next(1, 4); n > 0; n--)
                {
                    var bit = random.Next(bytes.Length * 8);
                    bytes[bit / 8] ^= (byte)(1 << (bit % 8));
                }

                return (bytes, "bits flipped");
            }

            case 17:
                return ([], "an empty message");
            case 18:
            {
                // A channel_data with a user id other than the one signed.
                var channel = $"presence-fuzz-{random.Next(3)}";
                var channelData = """{"user_id":"honest"}""";
                frame = new JsonObject
                {
                    ["event"] = "pusher:subscribe",
                    ["data"] = new JsonObject { ["channel"] = channel, ["auth"] = PusherSocket.Auth(RelayServer.Key, $"{socketId}:{channel}:{channelData}"), ["channel_data"] = """{"user_id":"admin"}""" },
                };
                return (Bytes(frame), "channel_data changed after signing");
            }

            default:
            {
                // Sign-in mutated: user_data changed after signing, or one that is signed but holds no usable id.
                string[] userData = ["{}", "{\"id\":\"\"}", "{\"id\":{}}", "{\"id\":\"a b#\"}", "{\"id\":\"" + new string('i', 200) + "\"}", "[]", "x", "{\"id\":7}"];
                var chosen = userData[random.Next(userData.Length)];
                var signed = random.Next(2) == 0;
                frame = new JsonObject
                {
                    ["event"] = "pusher:signin",
                    ["data"] = new JsonObject { ["auth"] = PusherSocket.Auth(RelayServer.Key, $"{socketId}::user::{(signed ? chosen : "{\"id\":\"someone\"}")}"), ["user_data"] = chosen },
                };
                return (Bytes(frame), $"signin user_data {Shorten(chosen)} {(signed ? "signed" : "unsigned")}");
            }
        }
    }

    // A property of the frame or of its data object, picked at random.
    private static (JsonObject Owner, string Name) AnyProperty(Random random, JsonObject frame)
    {
        var owners = new List<JsonObject> { frame };
        if (frame["data"] is JsonObject data && data.Count > 0)
        {
            owners.Add(data);
        }

        var owner = owners[random.Next(owners.Count)];
        var names = owner.Select(static p => p.Key).ToList();
        return (owner, names[random.Next(names.Count)]);
    }

    private static byte[] Bytes(JsonObject frame) => Encoding.UTF8.GetBytes(frame.ToJsonString());

    // The frame with `name`'s value replaced by raw JSON text.
    private static byte[] Splice(JsonObject frame, string name, string raw)
    {
        frame[name] = "\u0001RAW\u0001";
        var mark = Encoding.UTF8.GetBytes(JsonValue.Create("\u0001RAW\u0001")!.ToJsonString());
        return Replace(Bytes(frame), mark, Encoding.UTF8.GetBytes(raw));
    }

    private static byte[] Replace(byte[] bytes, byte[] mark, byte[] with)
    {
        var at = bytes.AsSpan().IndexOf(mark);
        return at < 0 ? bytes : [.. bytes.AsSpan(0, at), .. with, .. bytes.AsSpan(at + mark.Length)];
    }

    private static string Shorten(string text) => text.Length > 120 ? text[..120] + $"…({text.Length})" : text;

    private static string Shorten(List<(byte[] Bytes, bool Binary)> frames) =>
        string.Join(" | ", frames.Select(static f => (f.Binary ? "binary " : "") + Shorten(Encoding.UTF8.GetString(f.Bytes))));
}

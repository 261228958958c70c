using System.Globalization;

namespace Relay.Functions.Archive;

/// <summary>
/// Where the archive puts a channel's messages: <c>{prefix}{app}/{channel, percent-encoded}/{epoch}/{first seq}-{last
/// seq}.jsonl</c>, seqs zero-padded to 20 digits so a listing in key order is seq order. The channel is one encoded
/// level (its <c>/</c> becomes <c>%2F</c>), so an app's channels are the keys one level below it.
/// </summary>
public static class ArchiveKeys
{
    /// <summary>The object key of a channel's messages <paramref name="first"/> to <paramref name="last"/> in <paramref name="epoch"/>.</summary>
    public static string For(string prefix, string app, string channel, string epoch, long first, long last) =>
        string.Create(CultureInfo.InvariantCulture, $"{prefix}{app}/{Uri.EscapeDataString(channel)}/{epoch}/{first:D20}-{last:D20}.jsonl");

    /// <summary>The prefix of every object of <paramref name="channel"/>.</summary>
    public static string ChannelPrefix(string prefix, string app, string channel) => $"{prefix}{app}/{Uri.EscapeDataString(channel)}/";
}

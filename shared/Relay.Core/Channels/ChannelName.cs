namespace Relay.Core.Channels;

/// <summary>Channel-name and pattern rules of the v1 protocol (spec "Names").</summary>
public static class ChannelName
{
    /// <summary>The most UTF-8 bytes a channel name or pattern may have.</summary>
    public const int MaxBytes = 255;

    /// <summary>Whether <paramref name="name"/> is a valid concrete channel name; <paramref name="error"/> says why not.</summary>
    public static bool IsValidName(string? name, out string error) => throw new NotImplementedException();

    /// <summary>Whether <paramref name="pattern"/> is a valid subscription pattern (a name, or one with MQTT <c>+</c>/<c>#</c> levels).</summary>
    public static bool IsValidPattern(string? pattern, out string error) => throw new NotImplementedException();

    /// <summary>Whether <paramref name="value"/> contains a wildcard level (<c>+</c> or <c>#</c>).</summary>
    public static bool IsPattern(string value) => throw new NotImplementedException();

    /// <summary>The namespace of a channel: the text before its first <c>:</c>, or empty when there is none.</summary>
    public static string NamespaceOf(string channel) => throw new NotImplementedException();
}

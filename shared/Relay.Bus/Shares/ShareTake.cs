namespace Relay.Bus.Shares;

/// <summary>Who delivers a message of a group.</summary>
public enum ShareTake : byte
{
    /// <summary>This process: one of its members gets it.</summary>
    Here,

    /// <summary>Another process.</summary>
    Elsewhere,

    /// <summary>No process had an active member when the message was first asked about: each process follows its own rule.</summary>
    Nobody,
}

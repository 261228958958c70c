namespace Relay.Bus.Redis;

/// <summary>What <see cref="RedisPresence.ChangeAsync"/> did.</summary>
public enum PresenceChangeResult
{
    /// <summary>The change was stored and its event published.</summary>
    Applied,

    /// <summary>The fence key did not hold the owner (the shard moved on): nothing happened.</summary>
    NotOwner,

    /// <summary>An enter or update of a new member found the channel's presence set full: nothing happened.</summary>
    Full,
}

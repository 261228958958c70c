using Relay.Testing;

namespace Relay.Services.Tests;

/// <summary>A running server shared by a spec class: one implementation per bus the spec suite runs against.</summary>
public interface IServerFixture
{
    RelayServer Server { get; }
}

namespace Relay.Services.Tests.Realtime;

public sealed class NamespaceTests : NamespaceSpec;

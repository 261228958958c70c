namespace Relay.Services.Tests.Realtime;

public sealed class DeliveryPropertyTests : DeliveryPropertySpec;

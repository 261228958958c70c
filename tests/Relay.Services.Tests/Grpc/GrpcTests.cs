namespace Relay.Services.Tests.Grpc;

public sealed class GrpcTests(ServerFixture fixture) : GrpcSpec(fixture), IClassFixture<ServerFixture>;

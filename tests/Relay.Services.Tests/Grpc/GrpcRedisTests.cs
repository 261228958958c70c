namespace Relay.Services.Tests.Grpc;

public sealed class GrpcRedisTests(RedisBusServerFixture fixture) : GrpcSpec(fixture), IClassFixture<RedisBusServerFixture>;

using Relay.Auth.Verification;
using Relay.Bus;
using Relay.Bus.Redis;
using Relay.Ingress;
using Relay.Ingress.Connections;
using Relay.Kafka;
using Relay.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
SocketCompletions.Apply(builder.Configuration);
builder.AddRelayServiceDefaults().AddRelayAuthVerification();
builder.Services.AddRelayIngress();
builder.Services.AddRelayBus().AddRedisWhenConfigured(builder.Configuration);
builder.Services.AddRelayKafkaIngest();
var app = builder.Build();
app.MapRelayServiceDefaults();
app.MapRelayIngress();
app.Run();

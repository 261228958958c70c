using Relay.Bus;
using Relay.Bus.Dapr;
using Relay.Bus.Redis;
using Relay.FanOut;
using Relay.Functions;
using Relay.Kafka;
using Relay.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddRelayServiceDefaults().AddRelayFanOut();
builder.Services.AddRelayBus().AddRedisWhenConfigured(builder.Configuration).AddDaprWhenConfigured(builder.Configuration);
builder.Services.AddRelayKafkaFirehose();
builder.Services.AddRelayWebhooks();
builder.Services.AddRelayHistoryArchive();
var app = builder.Build();
app.MapRelayServiceDefaults();
app.MapRelayFanOut();
app.MapRelayDaprBus();
app.Run();

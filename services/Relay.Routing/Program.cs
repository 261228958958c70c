using Relay.Bus;
using Relay.Bus.Dapr;
using Relay.Bus.Redis;
using Relay.Routing;
using Relay.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddRelayServiceDefaults().AddRelayRouting();
builder.Services.AddRelayBus().AddRedisWhenConfigured(builder.Configuration).AddDaprWhenConfigured(builder.Configuration);
var app = builder.Build();
app.MapRelayServiceDefaults();
app.MapRelayRouting();
app.MapRelayDaprBus();
app.Run();

using Relay.Bus;
using Relay.Bus.Dapr;
using Relay.Bus.Redis;
using Relay.Functions;
using Relay.Routing;
using Relay.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddRelayServiceDefaults().AddRelayRouting();
builder.Services.AddRelayBus().AddRedisWhenConfigured(builder.Configuration).AddDaprWhenConfigured(builder.Configuration);
builder.Services.AddRelayFunctionHooks();
var app = builder.Build();
app.MapRelayServiceDefaults();
app.MapRelayRouting();
app.MapRelayDaprBus();
app.Run();

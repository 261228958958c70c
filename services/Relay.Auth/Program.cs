using Relay.Bus;
using Relay.Bus.Redis;
using Relay.Auth;
using Relay.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddRelayServiceDefaults().AddRelayAuth();
builder.Services.AddRelayBus().AddRedisWhenConfigured(builder.Configuration);
var app = builder.Build();
app.MapRelayServiceDefaults();
app.MapRelayAuth();
app.Run();

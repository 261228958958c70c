using Relay.Auth;
using Relay.Auth.Verification;
using Relay.Bus;
using Relay.Bus.Dapr;
using Relay.Bus.Redis;
using Relay.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddRelayServiceDefaults().AddRelayAuth();
builder.Services.AddRelayBus().AddRedisWhenConfigured(builder.Configuration).AddDaprWhenConfigured(builder.Configuration);
var app = builder.Build();
app.MapRelayServiceDefaults();
app.MapRelayAuth();
app.MapRelayDaprBus();
app.Run();

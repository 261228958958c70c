using Relay.Bus;
using Relay.Bus.Redis;
using Relay.Functions;
using Relay.ServiceDefaults;

// The functions on their own (AWS Lambda behind the Lambda Web Adapter, docs/functions.md): health on /healthz and
// /readyz for the adapter's readiness check, and the functions' endpoints.
var builder = WebApplication.CreateBuilder(args);
builder.AddRelayServiceDefaults();
builder.Services.AddRelayBus().AddRedisWhenConfigured(builder.Configuration);
var app = builder.Build();
app.MapRelayServiceDefaults();
app.MapRelayFunctions();
app.Run();

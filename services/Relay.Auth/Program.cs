using Relay.Auth;
using Relay.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.Services.AddRelayServiceDefaults().AddRelayAuth();
var app = builder.Build();
app.MapRelayServiceDefaults();
app.MapRelayAuth();
app.Run();

using Relay.Auth;
using Relay.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddRelayServiceDefaults().AddRelayAuth();
var app = builder.Build();
app.MapRelayServiceDefaults();
app.MapRelayAuth();
app.Run();

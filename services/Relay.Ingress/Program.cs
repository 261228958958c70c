using Relay.Auth;
using Relay.Ingress;
using Relay.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddRelayServiceDefaults().AddRelayAuth();
builder.Services.AddRelayIngress();
var app = builder.Build();
app.MapRelayServiceDefaults();
app.MapRelayIngress();
app.Run();

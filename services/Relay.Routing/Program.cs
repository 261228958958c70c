using Relay.Routing;
using Relay.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddRelayServiceDefaults().AddRelayRouting();
var app = builder.Build();
app.MapRelayServiceDefaults();
app.MapRelayRouting();
app.Run();

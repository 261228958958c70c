using Relay.FanOut;
using Relay.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddRelayServiceDefaults().AddRelayFanOut();
var app = builder.Build();
app.MapRelayServiceDefaults();
app.MapRelayFanOut();
app.Run();

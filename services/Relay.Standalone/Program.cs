using Relay.Standalone;

var app = StandaloneHost.Build(StandaloneHost.CreateBuilder(args));
app.Run();

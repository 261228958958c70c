using Relay.Functions;
using Relay.Functions.Archive;
using Relay.ServiceDefaults;

// The functions on their own, for AWS Lambda behind the Lambda Web Adapter (docs/functions.md): /healthz and /readyz
// for the adapter's readiness check, and the archive function (an after-publish hook target that writes to S3).
var builder = WebApplication.CreateBuilder(args);
builder.AddRelayServiceDefaults();
builder.Services.AddRelayArchiveFunction();
var app = builder.Build();
app.MapRelayServiceDefaults();
app.MapRelayArchiveFunction();
app.Run();

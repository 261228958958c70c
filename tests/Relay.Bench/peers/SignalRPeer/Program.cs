// The peer a .NET team would pick instead of Relay: an ASP.NET Core SignalR hub with groups as channels,
// configured as its documentation suggests for a busy hub and nothing more.
using Microsoft.AspNetCore.SignalR;

var builder = WebApplication.CreateBuilder(args);
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.Services.AddSignalR(options =>
{
    // Idle benchmark subscribers send nothing for minutes; the default 30 s client timeout would drop them.
    options.ClientTimeoutInterval = TimeSpan.FromMinutes(10);
    options.KeepAliveInterval = TimeSpan.FromSeconds(15);
    options.MaximumReceiveMessageSize = 64 * 1024;
});

var app = builder.Build();
app.MapHub<ChannelHub>("/hub");
app.MapGet("/healthz", () => "ok");
app.Run();

/// <summary>Subscribe joins a group; Publish sends to every member of the group, including the publisher if it joined.</summary>
internal sealed class ChannelHub : Hub
{
    public Task Subscribe(string channel) => Groups.AddToGroupAsync(Context.ConnectionId, channel);

    public Task Publish(string channel, string data) => Clients.Group(channel).SendAsync("message", channel, data);
}

namespace Relay.Auth.Tests;

/// <summary>One server shared by the tests of a class that leave its clock alone.</summary>
public sealed class AuthServerFixture : IAsyncLifetime
{
    private AuthServer? _server;

    internal AuthServer Server => _server ?? throw new InvalidOperationException("the server has not started");

    public async Task InitializeAsync() => _server = await AuthServer.StartAsync().WaitAsync(AuthServer.Timeout);

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync().AsTask().WaitAsync(AuthServer.Timeout);
        }
    }
}

using System.Collections.Concurrent;
using Microsoft.Playwright;
using Relay.Testing;

namespace Relay.Integration.Tests.Browser;

/// <summary>The try-it chat page served by the standalone host, driven in Debian's Chromium.</summary>
public sealed class ChatPageTests : IAsyncLifetime
{
    private const string ChromiumPath = "/usr/bin/chromium";
    private const float ActionTimeoutMs = 10_000;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly ConcurrentQueue<string> _pageErrors = new();
    private readonly ConcurrentQueue<string> _requests = new();
    private RelayServer? _server;
    private IPlaywright? _playwright;
    private IBrowser? _browser;

    private RelayServer Server => _server ?? throw new InvalidOperationException("not initialized");

    public async Task InitializeAsync()
    {
        if (!File.Exists(ChromiumPath))
        {
            throw new InvalidOperationException(
                $"Chromium is missing at {ChromiumPath}: the browser tests drive Debian's Chromium (Playwright's own browser download cannot work here). Install it with `apt-get install -y chromium`.");
        }

        _server = await RelayServer.StartAsync().WaitAsync(Timeout);
        _playwright = await Playwright.CreateAsync().WaitAsync(Timeout);
        _browser = await _playwright.Chromium.LaunchAsync(new()
        {
            ExecutablePath = ChromiumPath,
            Headless = true,
            Timeout = (float)Timeout.TotalMilliseconds,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        }).WaitAsync(Timeout);
    }

    public async Task DisposeAsync()
    {
        if (_browser is not null)
        {
            await _browser.CloseAsync().WaitAsync(Timeout);
        }

        _playwright?.Dispose();
        if (_server is not null)
        {
            await _server.DisposeAsync().AsTask().WaitAsync(Timeout);
        }
    }

    [Fact]
    public async Task ChatPage_TwoVisitorsJoinSameChannel_EachSeesTheOthersMessages()
    {
        var channel = "chat:browser-" + Guid.NewGuid().ToString("N")[..8];
        var alice = await OpenAsync();
        var bob = await OpenAsync();

        await JoinAsync(alice, "alice", channel);
        await JoinAsync(bob, "bob", channel);
        await SendAsync(alice, "hello from alice");
        await ExpectMessageAsync(bob, "alice: hello from alice");
        await SendAsync(bob, "hi alice, bob here");
        await ExpectMessageAsync(alice, "bob: hi alice, bob here");

        // Each side shows both messages once, in order (its own too: it is subscribed to the channel).
        foreach (var page in new[] { alice, bob })
        {
            var lines = await page.Locator("#messages li").AllInnerTextsAsync().WaitAsync(Timeout);
            Assert.Equal(2, lines.Count);
            Assert.StartsWith("alice: hello from alice", lines[0], StringComparison.Ordinal);
            Assert.StartsWith("bob: hi alice, bob here", lines[1], StringComparison.Ordinal);
        }

        Assert.Empty(_pageErrors);
        Assert.All(_requests, url => Assert.True(
            url.StartsWith(Server.BaseAddress.ToString(), StringComparison.Ordinal) || url.StartsWith($"ws://{Server.BaseAddress.Authority}/", StringComparison.Ordinal),
            "the page fetched something that is not on the Relay host: " + url));
    }

    [Fact]
    public async Task ChatPage_OnFirstLoad_PrefillsDevelopmentKeyWithWarningAndDefaultChannel()
    {
        var page = await OpenAsync();

        Assert.Equal("demo.root:demo-secret-for-development-only", await page.InputValueAsync("#key").WaitAsync(Timeout));
        Assert.Equal("chat:lobby", await page.InputValueAsync("#channel").WaitAsync(Timeout));
        Assert.Contains("local development", await page.InnerTextAsync("#key-note").WaitAsync(Timeout), StringComparison.Ordinal);
        Assert.True(await page.IsDisabledAsync("#send").WaitAsync(Timeout));
    }

    [Fact]
    public async Task ChatPage_JoinWithWrongKey_ShowsErrorAndStaysDisconnected()
    {
        var page = await OpenAsync();
        await page.FillAsync("#key", "test.root:not-the-secret-0123456789").WaitAsync(Timeout);
        await page.FillAsync("#clientId", "mallory").WaitAsync(Timeout);

        await page.ClickAsync("#join").WaitAsync(Timeout);

        await page.Locator("#status[data-state='error']").WaitForAsync(new() { Timeout = ActionTimeoutMs }).WaitAsync(Timeout);
        Assert.True(await page.IsVisibleAsync("#error").WaitAsync(Timeout));
        Assert.True(await page.IsDisabledAsync("#send").WaitAsync(Timeout));
    }

    private async Task<IPage> OpenAsync()
    {
        var context = await _browser!.NewContextAsync().WaitAsync(Timeout);
        var page = await context.NewPageAsync().WaitAsync(Timeout);
        page.SetDefaultTimeout(ActionTimeoutMs);
        page.PageError += (_, error) => _pageErrors.Enqueue(error);
        page.Request += (_, request) => _requests.Enqueue(request.Url);
        var response = await page.GotoAsync(Server.BaseAddress.ToString()).WaitAsync(Timeout);
        Assert.NotNull(response);
        Assert.True(response.Ok, $"GET / answered {response.Status}");
        return page;
    }

    private static async Task JoinAsync(IPage page, string name, string channel)
    {
        await page.FillAsync("#key", RelayServer.Key).WaitAsync(Timeout);
        await page.FillAsync("#clientId", name).WaitAsync(Timeout);
        await page.FillAsync("#channel", channel).WaitAsync(Timeout);
        await page.ClickAsync("#join").WaitAsync(Timeout);
        await page.Locator("#status[data-state='connected']").WaitForAsync(new() { Timeout = ActionTimeoutMs }).WaitAsync(Timeout);
        Assert.Equal("connected", (await page.InnerTextAsync("#status").WaitAsync(Timeout)).Trim());
    }

    private static async Task SendAsync(IPage page, string text)
    {
        await page.FillAsync("#message", text).WaitAsync(Timeout);
        await page.ClickAsync("#send").WaitAsync(Timeout);
    }

    private static Task ExpectMessageAsync(IPage page, string line) =>
        page.Locator("#messages li", new() { HasTextString = line }).WaitForAsync(new() { Timeout = ActionTimeoutMs }).WaitAsync(Timeout);
}

using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Relay.Testing;

namespace Relay.Services.Tests.Realtime;

/// <summary>
/// A settings file with one app, <c>reload</c>, whose keys a test rewrites (as an operator edits appsettings.json),
/// then reloads the server's configuration. The app sits at index 2, after the two test apps of <see cref="RelayServer"/>.
/// </summary>
internal sealed class KeyFile : IDisposable
{
    public const string App = "reload";

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"relay-keys-{Guid.NewGuid():N}.json");

    /// <summary>A key of the app: its id, secret and the globs it grants every operation on.</summary>
    public sealed record Key(string Id, string Secret, params string[] Channels)
    {
        public string Credentials => $"{App}.{Id}:{Secret}";
    }

    /// <summary>Adds the file to a server's configuration, after its in-memory settings.</summary>
    public void AddTo(IConfigurationBuilder configuration) => configuration.AddJsonFile(Path, optional: false, reloadOnChange: false);

    /// <summary>Writes the app with <paramref name="keys"/>, whole (a rename, so a reader never sees half a file).</summary>
    public void Write(params Key[] keys)
    {
        var app = new Dictionary<string, object>
        {
            ["Id"] = App,
            ["Keys"] = keys.Select(static k => new Dictionary<string, object>
            {
                ["Id"] = k.Id,
                ["Secret"] = k.Secret,
                ["Capabilities"] = k.Channels.Select(static c => new Dictionary<string, object> { ["Channel"] = c, ["Operations"] = new[] { "*" } }).ToArray(),
            }).ToArray(),
        };
        var json = JsonSerializer.Serialize(new { Relay = new { Auth = new { Apps = new Dictionary<string, object> { ["2"] = app } } } });
        var temporary = Path + ".tmp";
        File.WriteAllText(temporary, json);
        File.Move(temporary, Path, overwrite: true);
    }

    /// <summary>Rewrites the file and has <paramref name="server"/> read its configuration again.</summary>
    public void Rewrite(RelayServer server, params Key[] keys)
    {
        Write(keys);
        try
        {
            ((IConfigurationRoot)server.Services.GetRequiredService<IConfiguration>()).Reload();
        }
        catch (AggregateException ex) when (ex.Flatten().InnerExceptions.All(static e => e is OptionsValidationException))
        {
            // An invalid file: the options monitor behind ValidateOnStart rethrows to whoever reloaded (in production
            // the file watcher's task, where it goes unobserved). Relay's own reloader has logged it and kept the keys.
        }
    }

    public void Dispose() => File.Delete(Path);
}

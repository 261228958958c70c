using System.Diagnostics;
using Relay.Testing;

namespace Relay.Services.Tests.Mqtt;

/// <summary>
/// A third-party MQTT client run as a process (mosquitto_pub/mosquitto_sub, MQTT.js under Node): its output lines as
/// they come, killed by its PID when disposed (<see cref="LineProcess"/>). A missing binary fails the test and says what
/// to install.
/// </summary>
internal sealed class ClientProcess : LineProcess
{
    private ClientProcess(ProcessStartInfo start, string install)
        : base(start, install)
    {
    }

    public static ClientProcess Mosquitto(string tool, params string[] arguments)
    {
        var path = $"/usr/bin/{tool}";
        if (!File.Exists(path))
        {
            throw new InvalidOperationException($"{path} is missing: install the Debian packages mosquitto and mosquitto-clients (apt-get install -y mosquitto mosquitto-clients; .ci/run does it)");
        }

        // Line-buffered (coreutils' stdbuf): piped, the clients' stdio would hold their output until they exit.
        var start = new ProcessStartInfo("/usr/bin/stdbuf");
        start.ArgumentList.Add("-oL");
        start.ArgumentList.Add(path);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        return new ClientProcess(start, "install the Debian package coreutils");
    }

    public static ClientProcess MqttJs(params string[] arguments) =>
        new(NodeScript.StartInfo(Path.Combine(NodeScript.RepositoryRoot, "tests", "interop-js"), "mqtt", "MQTT.js (npm mqtt) is", "mqtt-client.cjs", arguments), NodeScript.Install);

    /// <summary>The next line containing <paramref name="text"/>, skipping others; fails after <paramref name="timeout"/>.</summary>
    public Task<string> WaitForAsync(string text, TimeSpan timeout) =>
        WaitForLineAsync(line => line.Contains(text, StringComparison.Ordinal), timeout, $"line with '{text}'");
}

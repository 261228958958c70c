using Microsoft.Extensions.Options;

namespace Relay.ServiceDefaults.Tls;

/// <summary>Checks <see cref="TlsOptions"/> at start-up, loading the certificate once so a bad file stops the host with a message, not the first handshake.</summary>
internal sealed class TlsOptionsValidator(TimeProvider time) : IValidateOptions<TlsOptions>
{
    public ValidateOptionsResult Validate(string? name, TlsOptions options)
    {
        var errors = new List<string>();
        var files = !string.IsNullOrWhiteSpace(options.CertificatePath);
        if (files && !string.IsNullOrWhiteSpace(options.Subject))
        {
            errors.Add("Relay:Tls:CertificatePath and Relay:Tls:Subject are both set: serve files or a certificate from the store, not both.");
        }

        if (!files && !string.IsNullOrWhiteSpace(options.KeyPath))
        {
            errors.Add("Relay:Tls:KeyPath is set without Relay:Tls:CertificatePath: name the certificate file too.");
        }

        if (!options.Enabled && options.Ports.Count > 0)
        {
            errors.Add("Relay:Tls:Ports is set, but no certificate is: set Relay:Tls:CertificatePath (or Relay:Tls:Subject), or remove the ports.");
        }

        foreach (var port in options.Ports)
        {
            if (port is < 1 or > 65535)
            {
                errors.Add($"Relay:Tls:Ports holds {port}: a TLS port is 1 to 65535 (a listener on port 0 gets TLS when Ports is empty, which means every TCP listener).");
            }
        }

        if (options.ReloadInterval <= TimeSpan.Zero)
        {
            errors.Add($"Relay:Tls:ReloadInterval must be positive (how often a renewed certificate is looked for); it is {options.ReloadInterval}.");
        }

        if (errors.Count == 0 && options.Enabled)
        {
            try
            {
                CertificateLoader.Load(options, time);
            }
            catch (Exception ex) when (ex is InvalidOperationException or IOException or UnauthorizedAccessException)
            {
                errors.Add(ex.Message);
            }
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}

using Microsoft.Extensions.Options;

namespace Relay.ServiceDefaults.Tls;

/// <summary>
/// Checks <see cref="InternalTlsOptions"/> at start-up: the certificate loads with its key, is valid now and was issued
/// by the CA in <c>CaPath</c>, so a wrong mount stops the host with a message rather than every call failing its handshake.
/// </summary>
internal sealed class InternalTlsOptionsValidator(TimeProvider time) : IValidateOptions<InternalTlsOptions>
{
    private const string Section = InternalTlsOptions.SectionName;

    public ValidateOptionsResult Validate(string? name, InternalTlsOptions options)
    {
        var errors = new List<string>();
        if (!options.Enabled)
        {
            if (!string.IsNullOrWhiteSpace(options.KeyPath) || !string.IsNullOrWhiteSpace(options.CaPath) || options.Port is not null)
            {
                errors.Add($"{Section}:KeyPath, CaPath or Port is set without {Section}:CertificatePath: name this service's certificate (issued by the internal CA) too, or remove them.");
            }

            return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
        }

        if (string.IsNullOrWhiteSpace(options.CaPath))
        {
            errors.Add($"{Section}:CaPath is required with {Section}:CertificatePath: the internal CA's certificate (PEM), the only issuer other services' certificates are trusted from.");
        }

        if (options.Port is < 1 or > 65535)
        {
            errors.Add($"{Section}:Port is {options.Port}: the internal listener's TCP port is 1 to 65535 (e.g. 8443), or leave it unset on a service that serves no internal endpoint.");
        }

        if (errors.Count > 0)
        {
            return ValidateOptionsResult.Fail(errors);
        }

        try
        {
            var certificate = CertificateLoader.Load(options.AsCertificate(), time).Certificate;
            var authorities = InternalTls.LoadAuthorities(options.CaPath!);
            var now = time.GetUtcNow();
            if (CertificateFiles.ValidityError(certificate, now, Section + ":CertificatePath", options.CertificatePath!, "other services refuse it", "Renew it (the files are picked up without a restart once valid).") is { } invalid)
            {
                errors.Add(invalid);
            }
            else if (!InternalTls.Chains(certificate, authorities, now.UtcDateTime, usage: null))
            {
                errors.Add($"{Section}:CertificatePath '{options.CertificatePath}' was not issued by the CA in {Section}:CaPath '{options.CaPath}': other services would refuse it. Mount the certificate the internal CA issued for this service, or the right CA.");
            }
        }
        catch (InvalidOperationException ex)
        {
            errors.Add(ex.Message);
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}

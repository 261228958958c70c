namespace Relay.Ingress.Limits;

/// <summary>
/// Per-app limits on one node, bound from <c>Relay:Ingress:AppLimits</c>: <c>Defaults</c> for every app, <c>Apps:{app}</c>
/// for one (its unset values fall back to the defaults). Everything is 0, off, unless set.
/// </summary>
public sealed class AppLimitsOptions
{
    /// <summary>The limits of every app without its own.</summary>
    public AppLimitSettings Defaults { get; set; } = new();

    /// <summary>Limits of one app, by app id.</summary>
    public Dictionary<string, AppLimitSettings> Apps { get; set; } = new(StringComparer.Ordinal);

    /// <summary>
    /// What an open of an app with <see cref="AppLimitSettings.MaxClusterConnections"/> gets while the counts across nodes
    /// cannot be reached (Redis down): <see cref="ClusterCountsDown.Admit"/> (default) or <see cref="ClusterCountsDown.Refuse"/>.
    /// </summary>
    public ClusterCountsDown ClusterCountsDown { get; set; } = ClusterCountsDown.Admit;

    /// <summary>Adds a message for each value no node can use.</summary>
    internal void Validate(List<string> failures)
    {
        if (!Enum.IsDefined(ClusterCountsDown))
        {
            failures.Add($"Relay:Ingress:AppLimits:ClusterCountsDown is {(int)ClusterCountsDown}; set it to Admit or Refuse.");
        }

        Check("Defaults", Defaults, failures);
        foreach (var (app, settings) in Apps)
        {
            Check("Apps:" + app, settings, failures);
        }
    }

    private static void Check(string section, AppLimitSettings settings, List<string> failures)
    {
        foreach (var (name, value) in new[]
        {
            (nameof(AppLimitSettings.MaxConnections), settings.MaxConnections),
            (nameof(AppLimitSettings.MaxClusterConnections), settings.MaxClusterConnections),
            (nameof(AppLimitSettings.PublishRatePerSecond), settings.PublishRatePerSecond),
            (nameof(AppLimitSettings.PublishBurst), settings.PublishBurst),
            (nameof(AppLimitSettings.MaxSubscriptions), settings.MaxSubscriptions),
        })
        {
            if (value is < 0 or > 100_000_000)
            {
                failures.Add($"Relay:Ingress:AppLimits:{section}:{name} is {value}; set it between 0 (no limit) and 100000000.");
            }
        }
    }
}

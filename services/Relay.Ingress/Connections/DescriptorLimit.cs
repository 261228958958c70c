using System.Runtime.InteropServices;

namespace Relay.Ingress.Connections;

/// <summary>
/// The process's open-file limit (<c>RLIMIT_NOFILE</c>): every client socket is a descriptor, and so is every thread
/// the runtime starts (a pipe while it starts, its name file), every loaded assembly and every Redis connection. When
/// they run out, the .NET runtime cannot start a thread and aborts the process ("Out of memory.", SIGABRT): so the
/// node caps client connections below the limit (<see cref="ConnectionGate"/>).
/// </summary>
internal static partial class DescriptorLimit
{
    /// <summary>Reads the limit and raises the soft one to the hard one (the runtime does it too; this makes sure); null off Unix.</summary>
    public static (long Soft, long Hard)? Raise()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS() && !OperatingSystem.IsFreeBSD())
        {
            return null;
        }

        var resource = OperatingSystem.IsLinux() ? LinuxNoFile : BsdNoFile;
        if (GetLimit(resource, out var limit) != 0)
        {
            return null;
        }

        if (limit.Soft < limit.Hard)
        {
            var raised = limit with { Soft = limit.Hard };
            if (SetLimit(resource, raised) == 0)
            {
                limit = raised;
            }
        }

        // RLIM_INFINITY reads as the largest unsigned value.
        return ((long)Math.Min(limit.Soft, long.MaxValue), (long)Math.Min(limit.Hard, long.MaxValue));
    }

    /// <summary>How many descriptors the process has open now (Linux; elsewhere a conservative guess).</summary>
    public static int OpenNow()
    {
        try
        {
            return Directory.Exists("/proc/self/fd") ? Directory.EnumerateFileSystemEntries("/proc/self/fd").Count() : GuessOpen;
        }
        catch (IOException)
        {
            return GuessOpen;
        }
    }

    /// <summary>An idle standalone host holds about 250 (assemblies, configuration watchers, epoll, pipes).</summary>
    private const int GuessOpen = 512;

    private const int LinuxNoFile = 7;
    private const int BsdNoFile = 8;

    [LibraryImport("libc", EntryPoint = "getrlimit", SetLastError = true)]
    private static partial int GetLimit(int resource, out Limit limit);

    [LibraryImport("libc", EntryPoint = "setrlimit", SetLastError = true)]
    private static partial int SetLimit(int resource, in Limit limit);

    [StructLayout(LayoutKind.Sequential)]
    private readonly record struct Limit(ulong Soft, ulong Hard);
}

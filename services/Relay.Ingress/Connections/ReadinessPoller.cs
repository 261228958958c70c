using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Relay.Ingress.Connections;

/// <summary>What <see cref="ReadinessPoller"/> wakes when its socket has input, has ended or has failed.</summary>
internal interface IReadinessTarget : IThreadPoolWorkItem
{
    /// <summary>The socket became readable (or ended). Called once per <see cref="ReadinessPoller.Registration.Arm"/>; may also be called spuriously.</summary>
    void OnReadable();
}

/// <summary>
/// Relay's own wait for input on the sockets of its own transport (Linux): a few epoll instances, each with a thread of
/// its own, and a slot per registered socket. A connection waiting for input costs its slot (a reference and a
/// generation) and the kernel's registration; the runtime's zero-byte receive, which it replaces, keeps per socket a
/// <c>SocketAsyncContext</c>, cached receive arguments, a receive operation and two delegates (~0.65 KB of heap per
/// idle connection, docs/benchmarks.md, MQTT). Each wait is one-shot (<c>EPOLLONESHOT</c>): <see cref="Registration.Arm"/>
/// re-arms it, and the kernel reports at once input that came before. A wake-up runs on the poller's thread when socket
/// completions run inline (<see cref="SocketCompletions.Inline"/>), as the runtime's do, else on the thread pool.
/// </summary>
/// <remarks>
/// Closing a socket takes it out of the epoll set without a wake-up: the owner ends a waiting read itself when it
/// closes the socket (<c>BareSocketTransport.Abort</c>). Every call on the socket's descriptor holds a reference on its
/// handle, so a descriptor number closed and reused by another socket is never touched; an event that was already
/// collected for a slot since freed (and perhaps reused) carries the slot's old generation and is dropped.
/// </remarks>
internal sealed unsafe partial class ReadinessPoller
{
    private const int EpollCloexec = 0x80000;
    private const int CtlAdd = 1;
    private const int CtlDel = 2;
    private const int CtlMod = 3;
    private const uint EpollIn = 0x001;
    private const uint EpollRdHup = 0x2000;
    private const uint EpollOneShot = 1u << 30;
    private const int Eintr = 4;
    private const int Eexist = 17;
    private const int Enoent = 2;
    private const int MaxEvents = 256;

    private static readonly Lazy<ReadinessPoller?> s_shared = new(Create);

    // struct epoll_event is packed on x86-64 (12 bytes: events at 0, data at 4) and naturally aligned elsewhere (16 bytes: data at 8).
    private static readonly int s_eventSize = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 12 : 16;
    private static readonly int s_dataOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 4 : 8;

    private readonly Loop[] _loops;
    private int _next;

    private ReadinessPoller(int loops, bool inline)
    {
        _loops = new Loop[loops];
        for (var i = 0; i < loops; i++)
        {
            _loops[i] = new Loop(i, inline);
        }
    }

    /// <summary>The process's poller, started on first use: null where epoll is not there (not Linux) or cannot be made.</summary>
    public static ReadinessPoller? Shared => s_shared.Value;

    /// <summary>Whether wake-ups run on the poller's threads (else on the thread pool).</summary>
    public bool Inline => _loops[0].Inline;

    /// <summary>Takes a slot for <paramref name="target"/>'s socket; nothing is registered with the kernel until the first <see cref="Registration.Arm"/>.</summary>
    public Registration Register(IReadinessTarget target)
    {
        var loop = _loops[(uint)Interlocked.Increment(ref _next) % (uint)_loops.Length];
        return loop.Take(target);
    }

    /// <summary>Slots taken and not given back, over every loop (tests: a connection that ended gave its slot back).</summary>
    internal int SlotsInUse => _loops.Sum(loop => loop.SlotsInUse);

    /// <summary>A poller of its own for tests: <paramref name="loops"/> threads, wake-ups inline or on the pool.</summary>
    internal static ReadinessPoller CreateForTests(int loops, bool inline) => new(loops, inline);

    private static ReadinessPoller? Create()
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        try
        {
            return new ReadinessPoller(SocketCompletions.EventThreads, SocketCompletions.Inline);
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException or SocketException)
        {
            return null;
        }
    }

    /// <summary>A socket's slot in one of the poller's epoll sets. A value the owner keeps in a field; not thread-safe: one wait at a time.</summary>
    internal struct Registration
    {
        private readonly Loop? _loop;
        private readonly int _slot;
        private readonly uint _generation;
        private bool _added;

        internal Registration(Loop loop, int slot, uint generation)
        {
            _loop = loop;
            _slot = slot;
            _generation = generation;
        }

        /// <summary>Whether this is a slot (not the default value).</summary>
        public readonly bool IsTaken => _loop is not null;

        /// <summary>
        /// Asks for one wake-up when <paramref name="socket"/> has input (or has ended); at once if it already has. False
        /// when the socket is closed or the kernel refuses: no wake-up will come, and the caller treats it as the end.
        /// </summary>
        public bool Arm(SafeSocketHandle socket) => _loop!.Arm(socket, ref _added, Data);

        /// <summary>
        /// Gives the slot back and takes the socket out of the epoll set if it is still open; a wake-up already collected
        /// for it is dropped, and so is any for a later <see cref="Arm"/>. A second call does nothing.
        /// </summary>
        public readonly void Release(SafeSocketHandle socket) => _loop?.Release(socket, _slot, _generation, _added);

        private readonly ulong Data => ((ulong)_generation << 32) | (uint)_slot;
    }

    /// <summary>One epoll set, its thread, and the slots of the sockets registered with it.</summary>
    internal sealed class Loop
    {
        private const int ChunkSize = 1024;

        private readonly int _epoll;
        private readonly Lock _gate = new();
        private readonly Stack<int> _free = new();

        // Slot i is _targets[i / ChunkSize][i % ChunkSize]; chunks are never replaced, so the thread reads a slot without the lock.
        private IReadinessTarget?[][] _targets = [];
        private uint[][] _generations = [];
        private int _count;

        public Loop(int index, bool inline)
        {
            Inline = inline;
            _epoll = EpollCreate1(EpollCloexec);
            if (_epoll < 0)
            {
                throw new SocketException(Marshal.GetLastPInvokeError());
            }

            var thread = new Thread(Run) { IsBackground = true, Name = $"Relay poller {index}" };
            thread.UnsafeStart();
        }

        public bool Inline { get; }

        public int SlotsInUse
        {
            get
            {
                lock (_gate)
                {
                    return _count - _free.Count;
                }
            }
        }

        public Registration Take(IReadinessTarget target)
        {
            lock (_gate)
            {
                if (!_free.TryPop(out var slot))
                {
                    slot = _count++;
                    if (slot / ChunkSize == _targets.Length)
                    {
                        // A new chunk: the arrays of chunks are replaced whole, the chunks in them kept.
                        Volatile.Write(ref _targets, [.. _targets, new IReadinessTarget?[ChunkSize]]);
                        Volatile.Write(ref _generations, [.. _generations, new uint[ChunkSize]]);
                    }
                }

                var generation = Volatile.Read(ref _generations[slot / ChunkSize][slot % ChunkSize]);
                Volatile.Write(ref _targets[slot / ChunkSize][slot % ChunkSize], target);
                return new Registration(this, slot, generation);
            }
        }

        public void Release(SafeSocketHandle socket, int slot, uint generation, bool added)
        {
            if (added)
            {
                Control(socket, CtlDel, 0, out _);
            }

            lock (_gate)
            {
                ref var current = ref _generations[slot / ChunkSize][slot % ChunkSize];
                if (current != generation)
                {
                    return;
                }

                // The generation moves first: an event collected for the old one no longer matches when the target is read.
                Volatile.Write(ref current, generation + 1);
                Volatile.Write(ref _targets[slot / ChunkSize][slot % ChunkSize], null);
                _free.Push(slot);
            }
        }

        public bool Arm(SafeSocketHandle socket, ref bool added, ulong data)
        {
            var op = added ? CtlMod : CtlAdd;
            if (Control(socket, op, data, out var error))
            {
                added = true;
                return true;
            }

            // Not where this registration thought it was (cannot happen while the handle is held; kept as the kernel's word).
            var retry = (op, error) switch
            {
                (CtlAdd, Eexist) => CtlMod,
                (CtlMod, Enoent) => CtlAdd,
                _ => 0,
            };
            if (retry != 0 && Control(socket, retry, data, out _))
            {
                added = true;
                return true;
            }

            return false;
        }

        /// <summary>One <c>epoll_ctl</c> on the socket's descriptor, holding its handle: false when it is closed or the call fails.</summary>
        private bool Control(SafeSocketHandle handle, int op, ulong data, out int error)
        {
            error = 0;
            SocketCalls.HeldDescriptor held;
            try
            {
                held = new SocketCalls.HeldDescriptor(handle);
            }
            catch (ObjectDisposedException)
            {
                return false;
            }

            using (held)
            {
                var ev = stackalloc byte[16];
                Unsafe.WriteUnaligned(ev, EpollIn | EpollRdHup | EpollOneShot);
                Unsafe.WriteUnaligned(ev + s_dataOffset, data);
                if (EpollCtl(_epoll, op, held.Fd, ev) == 0)
                {
                    return true;
                }

                error = Marshal.GetLastPInvokeError();
                return false;
            }
        }

        private void Run()
        {
            var events = (byte*)NativeMemory.Alloc((nuint)(MaxEvents * s_eventSize));
            while (true)
            {
                var count = EpollWait(_epoll, events, MaxEvents, -1);
                if (count < 0)
                {
                    var error = Marshal.GetLastPInvokeError();
                    if (error == Eintr)
                    {
                        continue;
                    }

                    // The epoll descriptor is Relay's own and never closed: anything else is a broken process.
                    Environment.FailFast($"Relay's readiness poller: epoll_wait failed with errno {error}");
                }

                for (var i = 0; i < count; i++)
                {
                    var data = Unsafe.ReadUnaligned<ulong>(events + (i * s_eventSize) + s_dataOffset);
                    if (Find((int)(uint)data, (uint)(data >> 32)) is not { } target)
                    {
                        continue;
                    }

                    if (Inline)
                    {
                        target.OnReadable();
                    }
                    else
                    {
                        ThreadPool.UnsafeQueueUserWorkItem(target, preferLocal: false);
                    }
                }
            }
        }

        /// <summary>The target of an event, or null when its slot has been given back since (its generation moved on).</summary>
        private IReadinessTarget? Find(int slot, uint generation)
        {
            var targets = Volatile.Read(ref _targets);
            var generations = Volatile.Read(ref _generations);
            var chunk = slot / ChunkSize;
            if (chunk >= targets.Length || chunk >= generations.Length)
            {
                return null;
            }

            var target = Volatile.Read(ref targets[chunk][slot % ChunkSize]);
            return Volatile.Read(ref generations[chunk][slot % ChunkSize]) == generation ? target : null;
        }
    }

    [LibraryImport("libc", EntryPoint = "epoll_create1", SetLastError = true)]
    private static partial int EpollCreate1(int flags);

    [LibraryImport("libc", EntryPoint = "epoll_ctl", SetLastError = true)]
    private static partial int EpollCtl(int epoll, int op, int fd, byte* ev);

    [LibraryImport("libc", EntryPoint = "epoll_wait", SetLastError = true)]
    private static partial int EpollWait(int epoll, byte* events, int maxEvents, int timeout);
}

using Relay.Bus.Routing;

namespace Relay.Bus.Redis;

// Request order across a shard handover. A caller keeps many publishes of a channel in flight; routing handles a shard
// channel's requests one at a time, so in steady state they take seqs in the order sent. During a handover some find
// nobody listening, or reach only an instance that no longer holds the shard and declines, and are sent again: without
// more, a later request that reached the new owner first is sequenced before an earlier one sent again.
//
// So each request that changes a channel (a publish, a presence change) carries the caller's number for it on its shard
// (1, 2, 3, … in the order the caller sends them) and the caller's lowest number still waiting for an answer (its floor).
// The owner handles number n only when nothing before it can still come (n is the floor), or when, holding the shard
// under the same fencing token, it already handled n - 1 of that caller: by induction, every request the caller had not
// seen answered when it sent n was handled before. Anything else it declines, and the caller sends it again (after the
// earlier ones, which are the floor): a request sent again is never handled after a later one of its shard.
public sealed partial class RedisBus
{
    // How many callers an owner remembers per shard before it starts again (a forgotten caller's next out-of-order request
    // is declined once and sent again: safe, only slower).
    private const int MaxOrderedCallers = 4_096;

    private ShardSendOrder[]? _sendOrders;
    private ShardAdmission[]? _admissions;

    // Only requests that change a channel are ordered; reads may go in any order.
    private static bool IsOrdered(RoutingRequest request) => request is PublishRequest or PresenceRequest;

    private ShardSendOrder SendOrderOf(int shard)
    {
        var orders = LazyInitializer.EnsureInitialized(ref _sendOrders, () => new ShardSendOrder[_leaseKeys.Length]);
        return Volatile.Read(ref orders[shard]) ?? Interlocked.CompareExchange(ref orders[shard], new ShardSendOrder(), null) ?? orders[shard];
    }

    private ShardAdmission AdmissionOf(int shard)
    {
        var admissions = LazyInitializer.EnsureInitialized(ref _admissions, () => new ShardAdmission[_leaseKeys.Length]);
        return Volatile.Read(ref admissions[shard]) ?? Interlocked.CompareExchange(ref admissions[shard], new ShardAdmission(), null) ?? admissions[shard];
    }

    // Whether this instance, holding the shard under <paramref name="fence"/>, may handle the request now; when it may,
    // its handler is started (<paramref name="handling"/>; otherwise default) before any other request of the shard is
    // admitted. The handler writes before it first awaits (the authority's scripts, RedisLuaScript), so requests go to
    // Redis in the order they were admitted. Admitted and started apart, a request admitted after another on a second
    // thread (two claims completing together, or a claim's thread and the queue's) could be written first: stored before
    // the earlier one, which the store then refused as handled before, and which nobody answered until its caller timed
    // out (DrainedRequestTests; the HandoverOrderTests CI flake).
    private Admission AdmitAndStart(
        IRoutingHandler handler,
        RoutingRequest request,
        int shard,
        string fence,
        string caller,
        RequestOrder order,
        out ValueTask<RoutingReply> handling)
    {
        if (!order.IsSet)
        {
            handling = HandleAdmitted(handler, request, shard, fence);
            return Admission.Handle;
        }

        var admission = AdmissionOf(shard);
        lock (admission.Gate)
        {
            var decision = admission.Admit(fence, caller, order);
            handling = decision == Admission.Handle || (decision == Admission.Repeat && IsRepeatable(request))
                ? HandleAdmitted(handler, request, shard, fence)
                : default;
            return decision;
        }
    }

    private enum Admission
    {
        // Nothing of the caller's before it can still come: handle it.
        Handle,

        // An earlier change of the caller's is being sent again: decline, so this one is sent again after it.
        Decline,

        // Handled here already (the caller sent it again because no answer came in time): the first handling answers.
        Repeat,
    }

    // An ordered request admitted here was fenced out (not handled): none of its caller's later ones may be handled first.
    private void ForgetOrder(int shard, RequestOrder order)
    {
        if (order.IsSet)
        {
            AdmissionOf(shard).Forget();
        }
    }

    // The caller's side, per shard: the next number, the numbers sent and not yet answered, and the requests waiting to
    // go again. Requests sent again go together, in number order, DeclinedResendDelay after the first of them asked (a
    // request sent on its own would find the owner still waiting for an earlier one, and the shard's requests would
    // crawl through a handover one round trip each); a first attempt made while some wait goes with them, after them.
    private sealed class ShardSendOrder
    {
        private readonly Lock _gate = new();
        private readonly SortedDictionary<long, (Func<RequestOrder, Task<long>> Send, TaskCompletionSource<Task<long>> Turn)> _waiting = [];
        private readonly OpenNumbers _open = new();
        private long _next;
        private bool _pumping;

        // Numbers the ticket (on its first send) and sends the request with the floor as it is now, under the lock, so
        // requests go out on the connection in number order; or queues it to go with the others sent again.
        public Task<long> Send(OrderTicket ticket, bool again, Func<RequestOrder, Task<long>> send)
        {
            lock (_gate)
            {
                if (ticket.Number == 0)
                {
                    ticket.Number = ++_next;
                    _open.Add(ticket.Number);
                }

                if (!again && _waiting.Count == 0)
                {
                    return send(new RequestOrder(ticket.Number, _open.Min));
                }

                var turn = new TaskCompletionSource<Task<long>>(TaskCreationOptions.RunContinuationsAsynchronously);
                _waiting[ticket.Number] = (send, turn);
                if (!_pumping)
                {
                    _pumping = true;
                    _ = SendWaitingAsync();
                }

                return turn.Task.Unwrap();
            }
        }

        public void Settled(OrderTicket ticket)
        {
            if (ticket.Number == 0)
            {
                return;
            }

            lock (_gate)
            {
                _open.Settle(ticket.Number);
                if (_waiting.Remove(ticket.Number, out var waiting))
                {
                    waiting.Turn.TrySetCanceled();
                }
            }
        }

        private async Task SendWaitingAsync()
        {
            await Task.Delay(DeclinedResendDelay).ConfigureAwait(false);
            lock (_gate)
            {
                foreach (var (number, (send, turn)) in _waiting)
                {
                    try
                    {
                        turn.TrySetResult(send(new RequestOrder(number, _open.Min)));
                    }
                    catch (Exception e)
                    {
                        turn.TrySetException(e);
                    }
                }

                _waiting.Clear();
                _pumping = false;
            }
        }
    }

    // The numbers given on a shard and not yet answered, as the lowest of them (Min) and flags for those above it that were
    // answered first: numbers are given in order and mostly answered in order, so a ring of flags from Min to the last
    // given holds them without a node per number (a SortedSet allocated one per publish).
    private sealed class OpenNumbers
    {
        private bool[] _answered = new bool[64];
        private long _last;

        // The lowest number given and not answered; past the last given when none is open.
        public long Min { get; private set; } = 1;

        public void Add(long number)
        {
            _last = number;
            if (number - Min >= _answered.Length)
            {
                // More open at once than the ring holds: twice the room, the flags moved to their new places.
                var larger = new bool[_answered.Length * 2];
                for (var n = Min; n < number; n++)
                {
                    larger[n & (larger.Length - 1)] = _answered[n & (_answered.Length - 1)];
                }

                _answered = larger;
            }
        }

        public void Settle(long number)
        {
            if (number < Min || number > _last)
            {
                return;
            }

            _answered[number & (_answered.Length - 1)] = true;
            while (Min <= _last && _answered[Min & (_answered.Length - 1)])
            {
                _answered[Min & (_answered.Length - 1)] = false;
                Min++;
            }
        }
    }

    // One request's number on its shard, taken when it is first sent.
    private sealed class OrderTicket(ShardSendOrder order)
    {
        public long Number { get; set; }

        public ShardSendOrder Order { get; } = order;
    }

    // The owner's side, per shard: under which fencing token, and each caller's highest number handled under it.
    private sealed class ShardAdmission
    {
        private readonly Dictionary<string, long> _handled = new(StringComparer.Ordinal);
        private string? _fence;

        // Held across an admission and the start of the admitted request's handling (AdmitAndStart).
        public Lock Gate { get; } = new();

        // The caller holds Gate.
        public Admission Admit(string fence, string caller, RequestOrder order)
        {
            if (!string.Equals(fence, _fence, StringComparison.Ordinal))
            {
                // A new tenure of the shard: what another owner, or this one before, handled is not known here.
                _fence = fence;
                _handled.Clear();
            }

            var known = _handled.TryGetValue(caller, out var handled);
            if (known && handled >= order.Number)
            {
                // Admitting a later number means every earlier one unanswered when it was sent was handled first.
                return Admission.Repeat;
            }

            if (order.Number != order.Floor && !(known && handled >= order.Number - 1))
            {
                return Admission.Decline;
            }

            if (!known || handled < order.Number)
            {
                if (!known && _handled.Count >= MaxOrderedCallers)
                {
                    _handled.Clear();
                }

                _handled[caller] = order.Number;
            }

            return Admission.Handle;
        }

        // A request admitted here was not handled after all (fenced out): start again, so none after it is handled first.
        public void Forget()
        {
            lock (Gate)
            {
                _fence = null;
                _handled.Clear();
            }
        }
    }
}

/// <summary>
/// A routing request's place among its caller's changes of one shard: its number (from 1, in the order sent) and the
/// caller's lowest number still waiting for an answer when it was sent. Default (0) for requests that are not ordered.
/// </summary>
internal readonly record struct RequestOrder(long Number, long Floor)
{
    public bool IsSet => Number > 0;
}

using Microsoft.Extensions.Options;

namespace Relay.Functions.Delivery;

/// <summary>
/// The last <see cref="FunctionsOptions.DeadLetterCapacity"/> events given up, in memory (the oldest goes first). Each
/// is also logged (event 3505) and counted (<c>relay_functions_dead_lettered_total</c>); this list is for looking at
/// what an outage cost from inside the process, not a store to replay from.
/// </summary>
public sealed class DeadLetters(IOptions<FunctionsOptions> options)
{
    private readonly Queue<DeadLetter> _letters = new();
    private readonly int _capacity = options?.Value.DeadLetterCapacity ?? FunctionsOptions.DefaultDeadLetterCapacity;

    /// <summary>What is held, oldest first.</summary>
    public IReadOnlyList<DeadLetter> Snapshot()
    {
        lock (_letters)
        {
            return [.. _letters];
        }
    }

    internal void Add(DeadLetter letter)
    {
        lock (_letters)
        {
            if (_letters.Count == _capacity)
            {
                _letters.Dequeue();
            }

            _letters.Enqueue(letter);
        }
    }
}

/* A library with global state, non-reentrant by design (tests/libset_*.rs): a running total,
 * a history of the values added, and a long computation that keeps its globals half-updated
 * while it runs (a flag says so). A preemptible function paused inside `counter_grind` leaves
 * them in the middle of an update: whoever else uses the same instance meanwhile sees it. */

long counter_total;               /* exported data: routing refuses modules that use it */
volatile int counter_busy;        /* 1 while counter_grind runs */
static long history[64];
static int history_length;
static volatile long grind_state; /* rewritten on every round of counter_grind */

long counter_add(long value)
{
    counter_total += value;
    history[history_length % 64] = value;
    history_length++;
    return counter_total;
}

long counter_get(void)
{
    return counter_total;
}

int counter_history_length(void)
{
    return history_length;
}

/* `rounds` rounds of a multiplicative recurrence on a global, then folds it into the total. */
long counter_grind(long rounds)
{
    counter_busy = 1;
    grind_state = counter_total;
    for (long i = 0; i < rounds; i++)
        grind_state = grind_state * 6364136223846793005L + 1442695040888963407L + i;
    counter_total += grind_state & 0xffff;
    counter_busy = 0;
    return counter_total;
}

/* What counter_grind(rounds) adds to a total of `total`, computed without touching the
 * globals (for the tests' expectations). */
long counter_grind_effect(long total, long rounds)
{
    long state = total;
    for (long i = 0; i < rounds; i++)
        state = state * 6364136223846793005L + 1442695040888963407L + i;
    return state & 0xffff;
}

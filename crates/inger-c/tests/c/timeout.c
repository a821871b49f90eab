/* A function that outlives its budget is paused and handed back as a continuation. */
#include "check.h"

static volatile int stop;
static volatile unsigned long spins;

static void spin_until_stopped(void *argument) {
    (void)argument;
    while (!stop) {
        spins++;
    }
}

int main(void) {
    inger_linger *call = NULL;
    CHECK_OK(inger_launch(&call, spin_until_stopped, 1000, NULL));
    CHECK(!inger_is_complete(call));
    CHECK(!inger_yielded(call)); /* stopped by the timer, not by inger_pause */

    /* More budget: still not done, and it makes progress. (A single slice may pass without
     * one spin when the machine is loaded and the thread is descheduled: try a few.) */
    unsigned long before = spins;
    for (int slice = 0; slice < 1000 && spins == before; slice++) {
        CHECK_OK(inger_resume(call, 1000));
        CHECK(!inger_is_complete(call));
    }
    CHECK(spins > before);


    /* A zero budget resumes it only briefly. */
    CHECK_OK(inger_resume(call, 0));
    CHECK(!inger_is_complete(call));

    stop = 1;
    CHECK_OK(inger_resume(call, INGER_FOREVER));
    CHECK(inger_is_complete(call));
    CHECK_OK(inger_cancel(call));

    inger_stats_t stats;
    CHECK_OK(inger_stats(&stats));
    CHECK(stats.preemptions >= 2);
    printf("timeout ok: %lu spins, %llu preemptions\n", spins, (unsigned long long)stats.preemptions);
    return 0;
}

/* CPU-time budgets: sleeping does not use one up, computing does, and a slice of computing
 * ends only once its whole budget of CPU time is used. */
#define _DEFAULT_SOURCE
#include "check.h"

#include <time.h>
#include <unistd.h>

static double thread_cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static volatile int slept;

static void nap(void *argument) {
    (void)argument;
    usleep(30 * 1000);
    nanosleep(&(struct timespec){.tv_sec = 0, .tv_nsec = 20 * 1000 * 1000}, NULL);
    slept = 1;
}

static volatile double computed_ms;

/* Computes for 60 ms of CPU time. */
static void compute(void *argument) {
    (void)argument;
    double start = thread_cpu_ms();
    volatile unsigned long x = 1;
    while ((computed_ms = thread_cpu_ms() - start) < 60.0) {
        for (int i = 0; i < 1000; i++) x = x * 6364136223846793005ul + 1;
    }
}

int main(void) {
    inger_linger *call = NULL;
    /* 50 ms asleep within a 2 ms CPU budget: it completes in one go. */
    CHECK_OK(inger_launch_cpu(&call, nap, 2000, NULL));
    CHECK(inger_is_complete(call));
    CHECK(slept);
    CHECK_OK(inger_cancel(call));

    /* 60 ms of computing in 5 ms CPU slices: at most 13 slices, each used whole. */
    CHECK_OK(inger_launch_cpu(&call, compute, 5000, NULL));
    int slices = 1;
    while (!inger_is_complete(call)) {
        CHECK(!inger_yielded(call));
        CHECK_OK(inger_resume_cpu(call, 5000));
        slices++;
    }
    CHECK_OK(inger_cancel(call));
    CHECK(slices >= 2);
    CHECK(slices <= 60 / 5 + 1);
    printf("cpu budget ok: %d slices\n", slices);
    return 0;
}

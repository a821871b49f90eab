/* Timeouts for ordinary C functions: run a computation with a time budget, and decide what
 * to do when it runs out: give it more time, or give up and cancel it.
 *
 *   make && ./timeout
 */
#include <libinger.h>

#include <stdint.h>
#include <stdio.h>

struct primes {
    uint64_t limit;  /* count the primes below this */
    uint64_t count;  /* result, valid once the call completed */
    uint64_t tested; /* progress, readable at any time */
};

static void count_primes(void *argument) {
    struct primes *job = argument;
    job->count = 0;
    for (uint64_t n = 2; n < job->limit; n++) {
        int prime = 1;
        for (uint64_t d = 2; d * d <= n; d++) {
            if (n % d == 0) {
                prime = 0;
                break;
            }
        }
        job->count += (uint64_t)prime;
        job->tested = n;
    }
}

/* Runs fn(arg) for at most timeout_us microseconds. Returns 1 if it finished, 0 if it was
 * cancelled, -1 on error. */
static int run_with_timeout(void (*fn)(void *), void *arg, uint64_t timeout_us) {
    inger_linger *call;
    int code = inger_launch(&call, fn, timeout_us, arg);
    if (code != INGER_OK) {
        fprintf(stderr, "inger_launch: %s\n", inger_strerror(code));
        return -1;
    }
    int finished = inger_is_complete(call);
    inger_cancel(call); /* frees the handle; cancels the call if it is still paused */
    return finished;
}

int main(void) {
    /* 1. A small job finishes well within a second. */
    struct primes small = {100000, 0, 0};
    int finished = run_with_timeout(count_primes, &small, 1000 * 1000);
    if (finished == 1) {
        printf("primes below %llu: %llu (finished within 1 s)\n", (unsigned long long)small.limit,
               (unsigned long long)small.count);
    } else if (finished == 0) {
        printf("primes below %llu: not finished within 1 s (is the machine very busy?)\n",
               (unsigned long long)small.limit);
    }

    /* 2. A big job does not: it is cancelled after 20 ms. */
    struct primes big = {1000000000, 0, 0};
    if (run_with_timeout(count_primes, &big, 20 * 1000) == 0) {
        printf("primes below %llu: gave up after 20 ms, having tested up to %llu\n",
               (unsigned long long)big.limit, (unsigned long long)big.tested);
    }

    /* 3. A medium job gets 25 ms at a time, with a progress report in between. */
    struct primes medium = {500000, 0, 0};
    inger_linger *call;
    int code = inger_launch(&call, count_primes, 25 * 1000, &medium);
    if (code != INGER_OK) {
        fprintf(stderr, "inger_launch: %s\n", inger_strerror(code));
        return 1;
    }
    int slices = 1;
    while (!inger_is_complete(call)) {
        printf("  after %4d ms: tested up to %llu\n", slices * 25, (unsigned long long)medium.tested);
        code = inger_resume(call, 25 * 1000);
        if (code != INGER_OK) {
            fprintf(stderr, "inger_resume: %s\n", inger_strerror(code));
            return 1;
        }
        slices++;
    }
    inger_cancel(call);
    printf("primes below %llu: %llu (in %d slices of 25 ms)\n", (unsigned long long)medium.limit,
           (unsigned long long)medium.count, slices);
    return 0;
}

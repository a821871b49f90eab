/* Built with -fsanitize=address (see tests/sanitizers.rs): launches, timer preemptions inside
 * instrumented code, resumes, nested launches, migration to other threads (with private
 * TLS) and cancellations of paused functions. AddressSanitizer must report nothing; the
 * program checks its own results.
 *
 * `sanitized longjmp` also leaves frames by longjmp inside the functions, which makes
 * AddressSanitizer clean the stack it believes the code runs on: right only if it was told
 * about the switches (with shared TLS; see `sys::debug_tools` in the core crate for why not
 * with private TLS).
 *
 * `sanitized overflow` instead writes one byte past a heap block inside a preemptible
 * function: AddressSanitizer must catch that (the test checks its report), which shows that
 * it watches code running on inger's stacks at all. */
#include "check.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

/* Recursion with arrays on the stack (redzones around each) and heap blocks, long enough to
 * be preempted many times at a 100 us budget. */
static uint64_t churn(unsigned depth, uint64_t seed) {
    char buffer[96];
    uint64_t value = seed;
    for (unsigned i = 0; i < sizeof buffer; i++) {
        value = value * 6364136223846793005u + 1442695040888963407u;
        buffer[i] = (char)(value >> 56);
    }
    char *copy = malloc(sizeof buffer);
    CHECK(copy != NULL);
    memcpy(copy, buffer, sizeof buffer);
    for (unsigned i = 0; i < sizeof buffer; i++) {
        value += (unsigned char)copy[i];
    }
    free(copy);
    if (depth > 0) {
        value ^= churn(depth - 1, value);
    }
    return value;
}

/* Leaves `depth` frames with arrays on the stack by longjmp: their redzones stay poisoned
 * unless AddressSanitizer knows which stack it runs on. */
static void __attribute__((noinline)) jump_out(jmp_buf *escape, unsigned depth) {
    char frame[256];
    memset(frame, (int)depth, sizeof frame);
    if (depth > 0) {
        jump_out(escape, depth - 1);
    } else if (escape != NULL) {
        longjmp(*escape, 1);
    }
    CHECK(frame[0] == (char)depth);
}

static void __attribute__((noinline)) bounce(void) {
    jmp_buf escape;
    if (setjmp(escape) == 0) {
        jump_out(&escape, 8);
    }
}

struct job {
    unsigned rounds;
    uint64_t result;
};

static int with_longjmp;

static void work(void *argument) {
    struct job *job = argument;
    uint64_t value = 0;
    for (unsigned round = 0; round < job->rounds; round++) {
        value += churn(12, round);
        if (with_longjmp) {
            bounce();
        }
    }
    job->result = value;
}

static uint64_t direct(unsigned rounds) {
    struct job job = {rounds, 0};
    work(&job);
    return job.result;
}

/* A function that launches another one and resumes it until done. */
static void nested(void *argument) {
    struct job *job = argument;
    struct job inner = {job->rounds, 0};
    inger_linger *call = NULL;
    CHECK_OK(inger_launch(&call, work, 50, &inner));
    while (!inger_is_complete(call)) {
        CHECK_OK(inger_resume(call, 50));
    }
    CHECK_OK(inger_cancel(call));
    job->result = inner.result + 1;
}

static unsigned long preemptions(void) {
    struct inger_stats stats;
    CHECK_OK(inger_stats(&stats));
    return (unsigned long)stats.preemptions;
}

struct migration {
    inger_linger *call;
    int code;
};

static void *resume_here(void *argument) {
    struct migration *migration = argument;
    migration->code = inger_resume(migration->call, 200);
    return NULL;
}

/* Like inger's own code: not instrumented, it leaves the stack's shadow as it finds it, and
 * its large local area is written through ASan's `memset` interceptor, which checks it. */
static void __attribute__((no_sanitize_address, noinline)) uninstrumented(void *argument) {
    (void)argument;
    static volatile size_t size = 16384;
    char area[16384];
    memset(area, 1, size);
    __asm__ volatile("" : : "r"(area) : "memory");
}

static void overflow(void *argument) {
    (void)argument;
    static volatile size_t size = 16; /* opaque to the compiler's own bounds checks */
    volatile char *block = malloc(size);
    CHECK(block != NULL);
    block[size] = 1; /* one past the end */
    free((void *)block);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "overflow") == 0) {
        inger_linger *call = NULL;
        CHECK_OK(inger_launch(&call, overflow, GENEROUS_US, NULL));
        printf("not reached: the overflow went unnoticed\n");
        return 0;
    }
    with_longjmp = argc > 1 && strcmp(argv[1], "longjmp") == 0;
    inger_capabilities_t capabilities;
    CHECK_OK(inger_capabilities(&capabilities));
    printf("private thread-local storage: %d\n", capabilities.private_tls);
    unsigned long before = preemptions();
    const unsigned rounds = 400;
    const uint64_t expected = direct(rounds);

    /* Launches, preempted round-robin until all complete. */
    enum { CALLS = 6 };
    struct job jobs[CALLS];
    inger_linger *calls[CALLS];
    for (int i = 0; i < CALLS; i++) {
        jobs[i] = (struct job){rounds, 0};
        CHECK_OK(inger_launch(&calls[i], i % 2 ? nested : work, 100, &jobs[i]));
    }
    for (int pending = CALLS; pending > 0;) {
        pending = 0;
        for (int i = 0; i < CALLS; i++) {
            if (!inger_is_complete(calls[i])) {
                CHECK_OK(inger_resume(calls[i], 100));
                pending += !inger_is_complete(calls[i]);
            }
        }
    }
    for (int i = 0; i < CALLS; i++) {
        CHECK(jobs[i].result == expected + (uint64_t)(i % 2));
        CHECK_OK(inger_cancel(calls[i]));
    }
    unsigned long preempted = preemptions() - before;
    CHECK(preempted > 0);

    /* Migration: each slice on a new thread (with private TLS; shared TLS refuses it). */
    struct job moving = {rounds, 0};
    struct migration migration = {NULL, INGER_OK};
    CHECK_OK(inger_launch(&migration.call, work, 100, &moving));
    unsigned moves = 0;
    while (!inger_is_complete(migration.call)) {
        if (capabilities.private_tls) {
            pthread_t thread;
            CHECK(pthread_create(&thread, NULL, resume_here, &migration) == 0);
            CHECK(pthread_join(thread, NULL) == 0);
            CHECK_OK(migration.code);
            moves++;
        } else {
            CHECK_OK(inger_resume(migration.call, 200));
        }
    }
    CHECK(moving.result == expected);
    CHECK_OK(inger_cancel(migration.call));

    /* Cancellation of paused functions, plain and nested, part-way through. */
    for (int i = 0; i < CALLS; i++) {
        struct job doomed = {rounds * 100, 0};
        inger_linger *call = NULL;
        CHECK_OK(inger_launch(&call, i % 2 ? nested : work, 300, &doomed));
        CHECK(!inger_is_complete(call));
        CHECK_OK(inger_cancel(call));
    }

    /* The stacks of those functions are reused, although their frames never returned (a
     * function cancelled while paused in a nested resume is unwound): code that ASan does
     * not instrument, as inger's own, may use that memory through ASan's interceptors. */
    for (int i = 0; i < CALLS; i++) {
        inger_linger *call = NULL;
        CHECK_OK(inger_launch(&call, uninstrumented, GENEROUS_US, NULL));
        CHECK(inger_is_complete(call));
        CHECK_OK(inger_cancel(call));
    }

    printf("sanitized ok: %lu preemptions, %u migrations\n", preempted, moves);
    return 0;
}

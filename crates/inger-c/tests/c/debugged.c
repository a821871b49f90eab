/* Run under gdb and valgrind by tests/debuggers.rs: a function preempted many times,
 * resumed round-robin with a nested launch and a migration to another thread, that calls
 * `deep_inside` (a breakpoint target for backtraces) once it has been preempted. The program
 * checks its own results. `debugged quick` does less work (for valgrind). */
#include "check.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

static volatile uint64_t sink;

/* Breakpoint targets: `nested_deep_inside` in a function nested in another (resumed
 * round-robin by `main`), `deep_inside` in a function resumed on another thread (by
 * `resume_here`). gdb's `bt` there must show the function's frames, the entry trampoline,
 * then the resumer's frames. */
void __attribute__((noinline)) deep_inside(uint64_t value) {
    sink = value;
    __asm__ volatile("" ::: "memory");
}

void __attribute__((noinline)) nested_deep_inside(uint64_t value) {
    sink = value;
    __asm__ volatile("" ::: "memory");
}

struct job {
    uint64_t rounds;
    uint64_t result;
    int call_deep; /* once preempted, call 1: `deep_inside`, 2: `nested_deep_inside` */
};

static unsigned long preemptions(void) {
    struct inger_stats stats;
    CHECK_OK(inger_stats(&stats));
    return (unsigned long)stats.preemptions;
}

static uint64_t __attribute__((noinline)) spin(uint64_t rounds) {
    uint64_t value = 1;
    for (uint64_t i = 0; i < rounds; i++) {
        value = value * 6364136223846793005u + 1442695040888963407u;
        __asm__ volatile("" : "+r"(value));
    }
    return value;
}

static void __attribute__((noinline)) work(void *argument) {
    struct job *job = argument;
    unsigned long before = preemptions();
    uint64_t value = spin(job->rounds);
    /* Keep going until the timer paused us at least once. */
    while (preemptions() == before) {
        value ^= spin(1000);
    }
    if (job->call_deep == 1) {
        deep_inside(value);
    } else if (job->call_deep == 2) {
        nested_deep_inside(value);
    }
    job->result = value;
}

static void nested(void *argument) {
    struct job *job = argument;
    struct job inner = {job->rounds, 0, job->call_deep ? 2 : 0};
    inger_linger *call = NULL;
    CHECK_OK(inger_launch(&call, work, 200, &inner));
    while (!inger_is_complete(call)) {
        CHECK_OK(inger_resume(call, 200));
    }
    CHECK_OK(inger_cancel(call));
    job->result = inner.result;
}

struct migration {
    inger_linger *call;
    int code;
};

static void *__attribute__((noinline)) resume_here(void *argument) {
    struct migration *migration = argument;
    while (!inger_is_complete(migration->call)) {
        migration->code = inger_resume(migration->call, 200);
        if (migration->code != INGER_OK) {
            break;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    uint64_t rounds = argc > 1 && strcmp(argv[1], "quick") == 0 ? 200000 : 20000000;
    unsigned long before = preemptions();

    /* Round-robin: plain and nested functions. */
    enum { CALLS = 4 };
    struct job jobs[CALLS];
    inger_linger *calls[CALLS];
    for (int i = 0; i < CALLS; i++) {
        jobs[i] = (struct job){rounds, 0, i == 1}; /* one nested chain reaches a target */
        CHECK_OK(inger_launch(&calls[i], i % 2 ? nested : work, 200, &jobs[i]));
    }
    for (int pending = CALLS; pending > 0;) {
        pending = 0;
        for (int i = 0; i < CALLS; i++) {
            if (!inger_is_complete(calls[i])) {
                CHECK_OK(inger_resume(calls[i], 200));
                pending += !inger_is_complete(calls[i]);
            }
        }
    }
    for (int i = 0; i < CALLS; i++) {
        CHECK(jobs[i].result != 0);
        CHECK_OK(inger_cancel(calls[i]));
    }

    /* Migration: launched here, finished on another thread, where it calls `deep_inside`. */
    inger_capabilities_t capabilities;
    CHECK_OK(inger_capabilities(&capabilities));
    struct job moving = {rounds, 0, 1};
    struct migration migration = {NULL, INGER_OK};
    CHECK_OK(inger_launch(&migration.call, work, 0, &moving));
    CHECK(!inger_is_complete(migration.call));
    if (capabilities.private_tls) {
        pthread_t thread;
        CHECK(pthread_create(&thread, NULL, resume_here, &migration) == 0);
        CHECK(pthread_join(thread, NULL) == 0);
    } else {
        resume_here(&migration);
    }
    CHECK_OK(migration.code);
    CHECK(moving.result != 0);
    CHECK_OK(inger_cancel(migration.call));

    /* A paused function cancelled. */
    struct job doomed = {rounds * 1000, 0, 0};
    inger_linger *call = NULL;
    CHECK_OK(inger_launch(&call, work, 200, &doomed));
    CHECK(!inger_is_complete(call));
    CHECK_OK(inger_cancel(call));

    printf("debugged ok: %lu preemptions\n", preemptions() - before);
    return 0;
}

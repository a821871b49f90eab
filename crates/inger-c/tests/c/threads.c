/* Handles and threads: with private thread-local storage a paused function moves to
 * whichever thread resumes it; with shared storage (INGER_SHARED_TLS=1) only its launching
 * thread may resume it. A handle in use by one thread is refused to another. Functions
 * launched on several threads at once do not interfere. */
#include "check.h"

#include <pthread.h>
#include <stdint.h>

static volatile int stop;
static _Thread_local int private_counter = 7;

struct progress {
    volatile unsigned long spins;
    int counter_at_start;
    int counter_at_end;
};

static void spin_until_stopped(void *argument) {
    struct progress *progress = argument;
    progress->counter_at_start = private_counter;
    private_counter++;
    while (!stop) {
        progress->spins++;
    }
    progress->counter_at_end = private_counter;
}

struct resume_elsewhere {
    inger_linger *call;
    int resume_code;
    int complete;
};

static void *resume_on_this_thread(void *argument) {
    struct resume_elsewhere *job = argument;
    stop = 1;
    job->resume_code = inger_resume(job->call, INGER_FOREVER);
    job->complete = inger_is_complete(job->call);
    return NULL;
}

static void *cancel_on_this_thread(void *argument) {
    struct resume_elsewhere *job = argument;
    job->resume_code = inger_cancel(job->call);
    return NULL;
}

static void run_on_thread(void *(*body)(void *), void *argument) {
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, body, argument) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
}

/* --- one handle, two threads at the same time --- */
static volatile int started, release;
static void wait_for_release(void *argument) {
    (void)argument;
    started = 1;
    while (!release) {
    }
}
static inger_linger *volatile held;
static void *launch_and_hold(void *argument) {
    (void)argument;
    inger_linger *call = NULL;
    CHECK_OK(inger_launch(&call, wait_for_release, 0, NULL));
    held = call;
    CHECK_OK(inger_resume(call, INGER_FOREVER));
    return NULL;
}

/* --- several threads launching at once --- */
struct worker {
    uint64_t total;
    int failures;
};
static void count_to_a_million(void *argument) {
    uint64_t *total = argument;
    for (uint64_t i = 1; i <= 1000000; i++) {
        *(volatile uint64_t *)total += i;
    }
}
static void *launch_many(void *argument) {
    struct worker *worker = argument;
    for (int round = 0; round < 20; round++) {
        uint64_t total = 0;
        inger_linger *call = NULL;
        if (inger_launch(&call, count_to_a_million, 100, &total) != INGER_OK) {
            worker->failures++;
            continue;
        }
        while (!inger_is_complete(call)) {
            if (inger_resume(call, 100) != INGER_OK) {
                worker->failures++;
                break;
            }
        }
        if (inger_cancel(call) != INGER_OK || total != 500000500000u) {
            worker->failures++;
        }
        worker->total += total;
    }
    return NULL;
}

int main(void) {
    inger_capabilities_t capabilities;
    CHECK_OK(inger_capabilities(&capabilities));
    printf("private thread-local storage: %d\n", capabilities.private_tls);

    /* Resume a paused function on another thread. */
    struct progress progress = {0, 0, 0};
    struct resume_elsewhere job = {NULL, -1, -1};
    CHECK_OK(inger_launch(&job.call, spin_until_stopped, 1000, &progress));
    CHECK(!inger_is_complete(job.call));
    run_on_thread(resume_on_this_thread, &job);
    if (capabilities.private_tls) {
        CHECK_OK(job.resume_code);
        CHECK(job.complete);
        /* The function saw its own thread-local, not the caller's. */
        CHECK(progress.counter_at_start == 7 && progress.counter_at_end == 8);
        CHECK(private_counter == 7);
    } else {
        CHECK_CODE(job.resume_code, INGER_EWRONGTHREAD);
        CHECK(!job.complete && !inger_is_complete(job.call));
        CHECK_OK(inger_resume(job.call, INGER_FOREVER)); /* its own thread may */
        CHECK(inger_is_complete(job.call));
    }
    run_on_thread(cancel_on_this_thread, &job); /* any thread frees it */
    CHECK_OK(job.resume_code);

    /* A paused function cancelled by another thread. */
    stop = 0;
    CHECK_OK(inger_launch(&job.call, spin_until_stopped, 1000, &progress));
    job.resume_code = -1;
    run_on_thread(cancel_on_this_thread, &job);
    CHECK_OK(job.resume_code);

    /* While one thread runs the function, the handle is refused to the others. */
    pthread_t holder;
    CHECK(pthread_create(&holder, NULL, launch_and_hold, NULL) == 0);
    while (!started) {
    }
    CHECK_CODE(inger_resume(held, INGER_FOREVER), INGER_ERUNNING);
    CHECK_CODE(inger_cancel(held), INGER_ERUNNING);
    CHECK(!inger_is_complete(held) && !inger_yielded(held));
    release = 1;
    CHECK(pthread_join(holder, NULL) == 0);
    CHECK(inger_is_complete(held));
    CHECK_OK(inger_cancel(held));

    /* Four threads launching and resuming at once. */
    enum { THREADS = 4 };
    pthread_t threads[THREADS];
    struct worker workers[THREADS] = {{0, 0}};
    for (int i = 0; i < THREADS; i++) {
        CHECK(pthread_create(&threads[i], NULL, launch_many, &workers[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
        CHECK(workers[i].failures == 0);
        CHECK(workers[i].total == 20u * 500000500000u);
    }
    printf("threads ok\n");
    return 0;
}

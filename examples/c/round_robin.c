/* A round-robin scheduler for ordinary C functions: each task gets a time slice with
 * inger_resume, in turn, until all have finished. The tasks are plain loops that never
 * yield; one of them also yields on its own with inger_pause.
 *
 *   make && ./round_robin
 */
#include <libinger.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define SLICE_US 500 /* each turn lasts half a millisecond */

struct task {
    const char *name;
    void (*body)(void *);
    uint64_t input;
    uint64_t result;
    inger_linger *call;
    unsigned turns;
};

static void sum_of_squares(void *argument) {
    struct task *task = argument;
    uint64_t total = 0;
    for (uint64_t i = 0; i < task->input; i++) {
        total += i * i;
        __asm__ volatile("" : "+r"(total)); /* keep the loop a loop */
    }
    task->result = total;
}

static void longest_collatz(void *argument) {
    struct task *task = argument;
    uint64_t best = 0;
    for (uint64_t start = 1; start < task->input; start++) {
        uint64_t length = 0;
        for (uint64_t n = start; n != 1; n = n % 2 ? 3 * n + 1 : n / 2) {
            length++;
        }
        if (length > best) {
            best = length;
        }
    }
    task->result = best;
}

static void fibonacci_mod(void *argument) {
    struct task *task = argument;
    uint64_t a = 0, b = 1;
    for (uint64_t i = 0; i < task->input; i++) {
        uint64_t next = (a + b) % 1000000007u;
        a = b;
        b = next;
    }
    task->result = a;
}

/* A polite task: gives up the processor by itself every so often. */
static void polite_counter(void *argument) {
    struct task *task = argument;
    for (uint64_t i = 0; i < task->input; i++) {
        task->result++;
        if (i % 1000000 == 0) {
            inger_pause();
        }
    }
}

int main(void) {
    struct task tasks[] = {
        {"sum of squares", sum_of_squares, 100000000, 0, NULL, 0},
        {"longest Collatz chain", longest_collatz, 1000000, 0, NULL, 0},
        {"Fibonacci mod 1e9+7", fibonacci_mod, 100000000, 0, NULL, 0},
        {"polite counter", polite_counter, 20000000, 0, NULL, 0},
    };
    const size_t count = sizeof tasks / sizeof tasks[0];

    /* Prepare every task without running it (budget 0). */
    for (size_t i = 0; i < count; i++) {
        int code = inger_launch(&tasks[i].call, tasks[i].body, 0, &tasks[i]);
        if (code != INGER_OK) {
            fprintf(stderr, "inger_launch(%s): %s\n", tasks[i].name, inger_strerror(code));
            return 1;
        }
    }

    size_t running = count;
    unsigned yields = 0;
    while (running > 0) {
        for (size_t i = 0; i < count; i++) {
            struct task *task = &tasks[i];
            if (inger_is_complete(task->call)) {
                continue;
            }
            int code = inger_resume(task->call, SLICE_US);
            if (code != INGER_OK) {
                fprintf(stderr, "inger_resume(%s): %s\n", task->name, inger_strerror(code));
                return 1;
            }
            task->turns++;
            yields += inger_yielded(task->call);
            if (inger_is_complete(task->call)) {
                printf("finished: %-22s result %20llu after %5u turns\n", task->name,
                       (unsigned long long)task->result, task->turns);
                running--;
            }
        }
    }
    for (size_t i = 0; i < count; i++) {
        inger_cancel(tasks[i].call);
    }

    inger_stats_t stats;
    inger_stats(&stats);
    printf("%llu preemptions, %u voluntary yields\n", (unsigned long long)stats.preemptions, yields);
    return 0;
}

/* A deterministic computation, sliced into many short budgets, gives the same result as a
 * direct call; a prepared call (budget 0) does not start until resumed. */
#include "check.h"

#include <stdint.h>

struct job {
    uint64_t iterations;
    uint64_t state;
    uint64_t done;
};

static void mix(void *argument) {
    struct job *job = argument;
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (uint64_t i = 0; i < job->iterations; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x += i;
    }
    job->state = x;
    job->done = 1;
}

int main(void) {
    const uint64_t iterations = 200u * 1000u * 1000u;
    struct job direct = {iterations, 0, 0};
    mix(&direct);

    /* Prepared only: nothing runs until the first resume. */
    struct job sliced = {iterations, 0, 0};
    inger_linger *call = NULL;
    CHECK_OK(inger_launch(&call, mix, 0, &sliced));
    CHECK(!inger_is_complete(call));
    CHECK(sliced.done == 0);

    unsigned long resumes = 0;
    while (!inger_is_complete(call)) {
        CHECK_OK(inger_resume(call, 200));
        resumes++;
        CHECK(resumes < 100u * 1000u * 1000u);
    }
    CHECK(sliced.done == 1);
    CHECK(sliced.state == direct.state);
    CHECK_OK(inger_cancel(call));
    CHECK(resumes > 1); /* it did not all fit in one 200 us slice */
    printf("resume ok: %lu resumes\n", resumes);
    return 0;
}

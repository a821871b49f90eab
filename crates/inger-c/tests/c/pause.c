/* inger_pause hands control back cooperatively and inger_yielded reports it; plus the
 * in-function query, inger_nopreempt, and nesting. */
#include "check.h"

static int steps;
static int inside_during_call;

static void three_steps(void *argument) {
    (void)argument;
    inside_during_call = inger_in_preemptible();
    steps = 1;
    inger_pause();
    steps = 2;
    inger_pause();
    steps = 3;
}

static int critical_runs;
static void critical(void *argument) {
    (void)argument;
    critical_runs++;
}

static void uses_nopreempt(void *argument) {
    (void)argument;
    CHECK_OK(inger_nopreempt(critical, NULL));
    CHECK_CODE(inger_nopreempt(NULL, NULL), INGER_ENULL);
}

struct nested {
    int inner_steps;
    int inner_complete;
};

static void inner(void *argument) {
    int *inner_steps = argument;
    (*inner_steps)++;
    inger_pause();
    (*inner_steps)++;
}

static void outer(void *argument) {
    struct nested *nested = argument;
    inger_linger *call = NULL;
    CHECK_OK(inger_launch(&call, inner, INGER_FOREVER, &nested->inner_steps));
    CHECK(inger_yielded(call) && !inger_is_complete(call));
    inger_pause(); /* the outer one pauses too, with the inner one still paused */
    CHECK_OK(inger_resume(call, INGER_FOREVER));
    nested->inner_complete = inger_is_complete(call);
    CHECK_OK(inger_cancel(call));
}

int main(void) {
    inger_pause(); /* outside a preemptible function: nothing happens */

    inger_linger *call = NULL;
    CHECK_OK(inger_launch(&call, three_steps, INGER_FOREVER, NULL));
    CHECK(inside_during_call);
    CHECK(steps == 1);
    CHECK(inger_yielded(call) && !inger_is_complete(call));
    CHECK_OK(inger_resume(call, INGER_FOREVER));
    CHECK(steps == 2 && inger_yielded(call));
    CHECK_OK(inger_resume(call, INGER_FOREVER));
    CHECK(steps == 3);
    CHECK(inger_is_complete(call) && !inger_yielded(call));
    CHECK_OK(inger_cancel(call));

    inger_stats_t stats;
    CHECK_OK(inger_stats(&stats));
    CHECK(stats.yields >= 2);

    CHECK_OK(inger_launch(&call, uses_nopreempt, INGER_FOREVER, NULL));
    CHECK(inger_is_complete(call) && critical_runs == 1);
    CHECK_OK(inger_cancel(call));
    CHECK_OK(inger_nopreempt(critical, NULL)); /* outside: just calls it */
    CHECK(critical_runs == 2);

    struct nested nested = {0, 0};
    CHECK_OK(inger_launch(&call, outer, INGER_FOREVER, &nested));
    CHECK(inger_yielded(call) && nested.inner_steps == 1);
    CHECK_OK(inger_resume(call, INGER_FOREVER));
    CHECK(inger_is_complete(call));
    CHECK(nested.inner_steps == 2 && nested.inner_complete);
    CHECK_OK(inger_cancel(call));
    printf("pause ok\n");
    return 0;
}

/* A function that returns within its budget completes in inger_launch. */
#include "check.h"

#include <string.h>

struct sum {
    const int *values;
    int count;
    long total;
};

static void add_up(void *argument) {
    struct sum *sum = argument;
    for (int i = 0; i < sum->count; i++) {
        sum->total += sum->values[i];
    }
}

static void set_flag(void *argument) { *(int *)argument = 1; }

int main(void) {
    int values[1000];
    for (int i = 0; i < 1000; i++) {
        values[i] = i;
    }

    /* Unlimited budget. */
    struct sum sum = {values, 1000, 0};
    inger_linger *call = NULL;
    CHECK_OK(inger_launch(&call, add_up, INGER_FOREVER, &sum));
    CHECK(call != NULL);
    CHECK(inger_is_complete(call));
    CHECK(!inger_yielded(call));
    CHECK(sum.total == 999 * 1000 / 2);
    CHECK_OK(inger_cancel(call)); /* a completed handle is freed too */

    /* A finite, generous budget. */
    int flag = 0;
    CHECK_OK(inger_launch(&call, set_flag, GENEROUS_US, &flag));
    CHECK(inger_is_complete(call));
    CHECK(flag == 1);
    CHECK_OK(inger_cancel(call));

    /* Many launches in a row reuse stacks and handles without trouble. */
    for (int i = 0; i < 10000; i++) {
        flag = 0;
        CHECK_OK(inger_launch(&call, set_flag, INGER_FOREVER, &flag));
        CHECK(flag == 1 && inger_is_complete(call));
        CHECK_OK(inger_cancel(call));
    }

    /* Outside any preemptible function. */
    CHECK(!inger_in_preemptible());
    printf("completion ok\n");
    return 0;
}

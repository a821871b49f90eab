/* inger_cancel frees handles in every state: prepared (the function never runs), paused
 * (the rest of it never runs), and completed. */
#include "check.h"

static volatile int reached_end;
static volatile int started;

static void spin_forever(void *argument) {
    (void)argument;
    started = 1;
    for (;;) {
        __asm__ volatile("" ::: "memory");
    }
    reached_end = 1;
}

static void mark(void *argument) { *(volatile int *)argument = 1; }

/* An outer function resuming an inner one that never ends: both pause at the outer deadline. */
static inger_linger *inner;
static void resume_inner_forever(void *argument) {
    (void)argument;
    CHECK_OK(inger_launch(&inner, spin_forever, 0, NULL));
    CHECK_OK(inger_resume(inner, INGER_FOREVER));
}

int main(void) {
    /* Prepared, never run. */
    int ran = 0;
    inger_linger *call = NULL;
    CHECK_OK(inger_launch(&call, mark, 0, &ran));
    CHECK_OK(inger_cancel(call));
    CHECK(ran == 0);

    /* Paused by the timer. */
    CHECK_OK(inger_launch(&call, spin_forever, 1000, NULL));
    CHECK(started && !inger_is_complete(call));
    CHECK_OK(inger_cancel(call));
    CHECK(!reached_end);

    /* Paused by itself, resumed once, then cancelled. */
    started = 0;
    CHECK_OK(inger_launch(&call, spin_forever, 500, NULL));
    CHECK_OK(inger_resume(call, 500));
    CHECK_OK(inger_cancel(call));

    /* Thousands of paused functions alive at once, then all cancelled. */
    enum { COUNT = 2000 };
    static inger_linger *calls[COUNT];
    for (int i = 0; i < COUNT; i++) {
        CHECK_OK(inger_launch(&calls[i], spin_forever, 50, NULL));
        CHECK(!inger_is_complete(calls[i]));
    }
    for (int i = 0; i < COUNT; i++) {
        CHECK_OK(inger_cancel(calls[i]));
    }

    /* A paused chain: cancelling the outer function abandons the inner handle, which stays
     * in use (it was being resumed) and is refused from then on. The outer is resumed until
     * its deadline has paused it inside the inner function (a loaded machine may pause it
     * earlier, before it got there). */
    started = 0;
    CHECK_OK(inger_launch(&call, resume_inner_forever, 1000, NULL));
    while (!started) {
        CHECK(!inger_is_complete(call));
        CHECK_OK(inger_resume(call, 1000));
    }
    CHECK(!inger_is_complete(call) && inner != NULL);
    CHECK_OK(inger_cancel(call));
    CHECK_CODE(inger_cancel(inner), INGER_ERUNNING);
    CHECK_CODE(inger_resume(inner, 10), INGER_ERUNNING);
    CHECK(!inger_is_complete(inner));

    /* Completed. */
    CHECK_OK(inger_launch(&call, mark, INGER_FOREVER, &ran));
    CHECK(ran == 1);
    CHECK_OK(inger_cancel(call));
    printf("cancel ok\n");
    return 0;
}
